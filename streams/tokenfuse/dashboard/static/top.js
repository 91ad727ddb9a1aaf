/* Top spenders: the scopes of a kind that spent most in a period (ClickHouse rollups). */
"use strict";

function render(data) {
  const metric = data.metric;
  document.getElementById("caption").textContent =
    `${data.kind}s by ${TF.metricName[metric]}, ${TF.time(data.start)} – ${TF.time(data.end)}`;
  Charts.bars(document.getElementById("chart"),
              data.rows.map((r) => ({label: r.scope, value: Number(r.amount), href: "/scope?key=" + encodeURIComponent(r.scope)})),
              (v) => TF.amount(metric, v));
  TF.fill(document.querySelector("#top tbody"), data.rows.map((r, i) => TF.el("tr", {"data-scope": r.scope},
    TF.el("td", {class: "muted", text: String(i + 1)}), TF.el("td", {}, TF.scopeLink(r.scope)),
    TF.el("td", {class: "num", text: TF.amount(metric, r.amount)}), TF.el("td", {class: "num", text: TF.usd(r.micro_usd)}),
    TF.el("td", {class: "num", text: TF.count(r.calls)}), TF.el("td", {class: "num", text: TF.count(r.input)}),
    TF.el("td", {class: "num", text: TF.count(r.output)}))));
  TF.show("top-empty", !data.rows.length);
}

document.addEventListener("DOMContentLoaded", () => {
  const state = {kind: "agent", metric: "cost_micro_usd", range: "24h"};
  const reload = TF.pickerPage("/api/top", state, render);
  document.getElementById("kind").addEventListener("change", (e) => { state.kind = e.target.value; reload(); });
});
