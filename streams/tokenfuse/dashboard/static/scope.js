/* The Scope page: one scope's state, budgets, windows, spend chart, what spends under it, its
   alerts and control changes; kill/release for operators. One stream per (scope, range). */
"use strict";

const params = new URLSearchParams(location.search);
const scopeKey = params.get("key") || "global";
let source = null;
let liveAlerts = [];
let historyAlerts = [];

function renderState(data) {
  if (data.error) { TF.banner(data.error); return; }
  const badge = document.getElementById("scope-state");
  const state = data.state && (data.state.until === null || data.state.until > Date.now()) ? data.state.state : "allow";
  badge.textContent = state;
  badge.className = "badge " + state;
  badge.dataset.state = state;
  document.getElementById("scope-state-detail").textContent = data.state && state !== "allow"
    ? `${data.state.reason} · ${TF.relative(data.state.until)}` : "";
  liveAlerts = data.alerts;
  renderAlerts();
}

function renderAlerts() {
  const seen = new Set();
  const all = [...liveAlerts, ...historyAlerts].filter((a) => {
    const id = `${a.created_at}|${a.budget_id}|${a.threshold_percent}|${a.action}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  }).sort((a, b) => b.created_at - a.created_at).slice(0, 30);
  TF.fill(document.getElementById("alerts"), all.map((a) => TF.el("li", {},
    TF.el("time", {text: TF.time(a.created_at)}),
    TF.el("div", {class: "what"}, TF.el("span", {class: "badge " + a.action, text: a.action}), " ",
          TF.el("span", {class: "muted", text: a.message})))));
  TF.show("alerts-empty", !all.length);
}

function amountRows(tbodySelector, rows, label) {
  TF.fill(document.querySelector(tbodySelector), rows.map((r) => TF.el("tr", {},
    TF.el("td", {}, label(r)), TF.el("td", {class: "num", text: TF.usd(r.micro_usd)}),
    TF.el("td", {class: "num", text: TF.count(r.tokens)}), TF.el("td", {class: "num", text: TF.count(r.calls)}))));
}

function renderSpend(data) {
  if (data.error) { TF.banner("History unavailable: " + data.error); return; }
  TF.banner("");
  TF.fill(document.querySelector("#budgets tbody"), data.budgets.map((u) => TF.el("tr", {"data-budget": u.budget_id},
    TF.el("td", {}, u.budget_id, TF.el("span", {class: "muted", text: ` ${u.window} · ${TF.metricName[u.metric] || u.metric}`})),
    TF.el("td", {}, TF.bar(u.percent)),
    TF.el("td", {class: "num", text: `${TF.amount(u.metric, u.spent)} / ${TF.amount(u.metric, u.limit)}`}),
    TF.el("td", {text: TF.relative(u.window_end)}))));
  TF.show("budgets-empty", !data.budgets.length);
  TF.fill(document.querySelector("#windows tbody"), data.windows.map((w) => TF.el("tr", {},
    TF.el("td", {text: w.window + (w.timezone !== "UTC" ? ` (${w.timezone})` : "")}),
    TF.el("td", {class: "num", text: TF.usd(w.micro_usd)}), TF.el("td", {class: "num", text: TF.count(w.tokens)}),
    TF.el("td", {class: "num", text: TF.count(w.calls)}), TF.el("td", {class: "muted", text: TF.time(w.start)}))));
  renderChart(data);
  document.querySelectorAll("#range [data-range]").forEach((b) => {
    if (data.range !== "custom") b.classList.toggle("on", b.dataset.range === data.range);
    if (b.dataset.range === "window") b.disabled = !data.budgets.length;
  });
  amountRows("#agents tbody", data.agents, (r) => TF.scopeLink("agent:" + r.name));
  amountRows("#runs tbody", data.runs, (r) => TF.scopeLink("run:" + r.name));
  TF.fill(document.querySelector("#models tbody"), data.models.map((m) => TF.el("tr", {},
    TF.el("td", {text: m.provider}), TF.el("td", {}, TF.scopeLink("model:" + m.model)),
    TF.el("td", {class: "num", text: TF.usd(m.micro_usd)}), TF.el("td", {class: "num", text: TF.count(m.calls)}))));
  document.getElementById("detail-caption").textContent = data.range === "window" ? "last 24 h" : `range ${data.range}`;
  historyAlerts = data.alert_history;
  renderAlerts();
  TF.fill(document.querySelector("#changes tbody"), data.changes.map((c) => TF.el("tr", {},
    TF.el("td", {text: TF.time(c.issued_at)}), TF.el("td", {}, TF.el("span", {class: "badge " + c.state, text: c.state})),
    TF.el("td", {text: c.reason}),
    TF.el("td", {class: "num", text: c.limit ? `${TF.count(c.spent)} / ${TF.count(c.limit)}` : ""}),
    TF.el("td", {text: c.until ? TF.time(c.until) : ""}))));
  TF.show("changes-empty", !data.changes.length);
}

function renderChart(data) {
  const chart = data.chart;
  const metric = chart.metric;
  document.getElementById("chart-caption").textContent = chart.cumulative
    ? `${TF.metricName[metric] || metric} since the budget window started, against its limit`
    : `${TF.metricName[metric] || metric} per ${chart.grain >= 86400e3 ? "day" : chart.grain >= 3600e3 ? "hour" : "minute"}`;
  Charts.line(document.getElementById("chart"), {series: chart.series, start: chart.start, end: chart.end,
    lines: chart.lines, grain: chart.grain, step: !chart.cumulative, forecast: chart.forecast,
    format: (v) => TF.amount(metric, v)});
}

function connect(choice) {
  if (source) source.close();
  const range = choice.range === "custom" ? "" : choice.range;
  if (choice.range === "custom") {
    // A custom period is a one-off read, not a live stream.
    TF.getJSON("/api/scope?" + TF.query({key: scopeKey, range: "custom", from: choice.from, to: choice.to}))
      .then((d) => { renderState(d.live); renderSpend(d.spend); }, (e) => TF.banner(e.message));
    return;
  }
  source = TF.stream("/events/scope?" + TF.query({key: scopeKey, range: range}), {live: renderState, spend: renderSpend});
}

async function control(action) {
  const result = document.getElementById("control-result");
  const response = await fetch("/control", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Tokenfuse-Token": document.getElementById("token").value},
    body: JSON.stringify({action: action, scope: scopeKey, reason: document.getElementById("reason").value,
                          until: document.getElementById("until").value || null}),
  });
  const body = await response.json();
  result.textContent = response.ok ? `published: ${body.published.state} (${body.published.reason})` : body.error;
  if (response.ok) sessionStorage.setItem("tokenfuse-token", document.getElementById("token").value);
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("scope-name").textContent = scopeKey;
  const kind = scopeKey.split(":")[0];  // what can spend under this scope
  document.getElementById("agents-card").hidden = !["global", "org", "team"].includes(kind);
  document.getElementById("runs-card").hidden = !["team", "agent"].includes(kind);
  document.title = scopeKey + " · tokenfuse";
  const config = await TF.getJSON("/api/config");
  if (config.operator) {
    document.getElementById("operator").hidden = false;
    document.getElementById("token").value = sessionStorage.getItem("tokenfuse-token") || "";
    document.getElementById("kill").addEventListener("click", () => control("kill"));
    document.getElementById("release").addEventListener("click", () => control("release"));
  }
  const first = params.get("range") || "";
  TF.rangePicker(document.getElementById("range"), ["window", ...TF.RANGES], first || "window", connect);
  connect({range: first});
});
