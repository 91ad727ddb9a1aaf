/* History: spend over time for a scope (or the biggest scopes of a pattern), from the rollups. */
"use strict";

function render(data) {
  const metric = data.metric;
  const per = data.grain >= 86400e3 ? "day" : data.grain >= 3600e3 ? "hour" : "minute";
  document.getElementById("caption").textContent = `${data.scope}: ${TF.metricName[metric]} per ${per}`;
  Charts.line(document.getElementById("chart"), {series: data.series, start: data.start, end: data.end, lines: [],
                                                 grain: data.grain, step: true, format: (v) => TF.amount(metric, v)});
  const totals = Object.entries(data.series).map(([scope, points]) => ({
    scope: scope, total: points.reduce((s, p) => s + p[1], 0), peak: Math.max(...points.map((p) => p[1]))}))
    .sort((a, b) => b.total - a.total);
  TF.fill(document.querySelector("#totals tbody"), totals.map((t) => TF.el("tr", {},
    TF.el("td", {}, TF.scopeLink(t.scope)), TF.el("td", {class: "num", text: TF.amount(metric, t.total)}),
    TF.el("td", {class: "num", text: TF.amount(metric, t.peak)}))));
  TF.show("totals-empty", !totals.length);
}

document.addEventListener("DOMContentLoaded", () => {
  const state = {scope: new URLSearchParams(location.search).get("scope") || "global", metric: "cost_micro_usd",
                 range: "24h"};
  const scope = document.getElementById("scope");
  scope.value = state.scope;
  const reload = TF.pickerPage("/api/history", state, render);
  document.getElementById("scope-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.scope = scope.value.trim() || "global";
    reload();
  });
});
