/* The Now page: spend against budgets, blocked and throttled scopes, the live alert feed.
   One stream (/events/now) brings both parts: "live" (Kafka) and "spend" (ClickHouse). */
"use strict";

const seenAlerts = new Set();

function forecastCell(use) {
  // Burn rate and breach ETA appear here once the worker publishes forecasts.
  return TF.el("td", {class: "muted forecast", text: use && use.forecast ? use.forecast.eta : "–"});
}

function budgetCells(use) {
  return [
    TF.el("td", {}, TF.el("span", {text: use.budget_id}), TF.el("span", {class: "muted", text: ` ${use.window} · ${TF.metricName[use.metric] || use.metric}`})),
    TF.el("td", {}, TF.bar(use.percent)),
    TF.el("td", {class: "num", text: `${TF.amount(use.metric, use.spent)} / ${TF.amount(use.metric, use.limit)}`}),
    forecastCell(use),
  ];
}

function renderSpend(data) {
  if (data.error) { TF.banner("History unavailable: " + data.error); return; }
  TF.banner("");
  const rows = [];
  for (const scope of data.scopes) {
    const budgets = scope.budgets.length ? scope.budgets : [null];
    budgets.forEach((use, i) => {
      const first = i === 0;
      rows.push(TF.el("tr", {"data-scope": scope.scope, "data-budget": use ? use.budget_id : ""},
        TF.el("td", {}, first ? TF.scopeLink(scope.scope) : ""),
        TF.el("td", {class: "num today", text: first ? TF.usd(scope.micro_usd) : ""}),
        use ? budgetCells(use) : [TF.el("td", {class: "muted", text: "no budget"}), TF.el("td"), TF.el("td"), forecastCell(null)]));
    });
  }
  TF.fill(document.querySelector("#scopes tbody"), rows);
  TF.show("scopes-empty", !rows.length);
  const other = data.other.map((use) => TF.el("tr", {"data-scope": use.scope, "data-budget": use.budget_id},
    TF.el("td", {}, TF.scopeLink(use.scope)), budgetCells(use)));
  TF.fill(document.querySelector("#other tbody"), other);
  TF.show("other-empty", !other.length);
  document.getElementById("asof").textContent = "spend as of " + TF.time(data.as_of) + " (ClickHouse rollups)";
}

function alertItem(alert, isNew) {
  const pct = alert.threshold_percent !== null && alert.threshold_percent !== undefined ? ` ${alert.threshold_percent}%` : "";
  return TF.el("li", {class: isNew ? "new" : "", "data-alert": alert.alert_id},
    TF.el("time", {text: TF.time(alert.created_at)}),
    TF.el("div", {class: "what"}, TF.el("span", {class: "badge " + alert.action, text: alert.action + pct}), " ",
          TF.scopeLink(alert.scope), " ",
          TF.el("span", {class: "muted", text: alert.message.startsWith(alert.scope + " ") ? alert.message.slice(alert.scope.length + 1) : alert.message})));
}

function renderLive(data) {
  if (data.error) { TF.banner("Live state unavailable: " + data.error); return; }
  const restricted = data.restricted.map((s) => TF.el("tr", {class: "state-" + s.state, "data-scope": s.scope, "data-state": s.state},
    TF.el("td", {}, TF.scopeLink(s.scope)),
    TF.el("td", {}, TF.el("span", {class: "badge " + s.state, text: s.state})),
    TF.el("td", {class: "reason", text: s.reason + (s.limit ? ` (${TF.count(s.spent)} of ${TF.count(s.limit)})` : "")}),
    TF.el("td", {title: s.until ? new Date(s.until).toISOString() : "", text: TF.relative(s.until)})));
  TF.fill(document.querySelector("#restricted tbody"), restricted);
  TF.show("restricted-empty", !restricted.length);
  const first = seenAlerts.size === 0;
  const items = data.alerts.map((a) => {
    const isNew = !first && !seenAlerts.has(a.alert_id);
    seenAlerts.add(a.alert_id);
    return alertItem(a, isNew);
  });
  TF.fill(document.getElementById("alerts"), items);
  TF.show("alerts-empty", !items.length);
}

document.addEventListener("DOMContentLoaded", () => {
  TF.stream("/events/now", {live: renderLive, spend: renderSpend});
});
