"""The data of each page, as JSON-ready dicts: live parts from Kafka (LiveState), spend parts
from ClickHouse (a Runner: the sink's SQL endpoint or a History, see history/sql.py).

Live parts are cheap (memory only) and pushed on every Kafka change; spend parts run queries
and are refreshed by the hub. `forecast` fields carry the worker's live breach forecast (its
latest `forecast` alert for the budget, scope and window), None when there is none.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from tokenfuse.dashboard import queries
from tokenfuse.dashboard.live import LiveState
from tokenfuse.dashboard.queries import TimeRange
from tokenfuse.history import reports
from tokenfuse.history.reports import BudgetUse, Period, ReportError, Runner
from tokenfuse.usage.scopes import KINDS, matches, validate_scope
from tokenfuse.usage.windows import parse_window

WINDOW_RANGE = "window"  # the scope chart's range "the budget's current window"


def concrete_scope(scope: str) -> str:
    """`scope` if it names one scope (agent:bot-7), else a ReportError saying why not."""
    problem = validate_scope(scope) or ("name one scope, not a '*' pattern" if "*" in scope else None)
    if problem:
        raise ReportError(problem)
    return scope


def use_dict(use: BudgetUse, forecast: dict[str, Any] | None = None) -> dict[str, Any]:
    """A budget's use, with the worker's breach forecast when one is live (its forecast alert)."""
    return {**asdict(use), "percent": use.percent, "forecast": forecast_text(forecast)}


def forecast_text(alert: dict[str, Any] | None) -> dict[str, Any] | None:
    if alert is None or alert.get("eta_p50") is None:
        return None

    def hhmm(ms: int | None) -> str:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%H:%M") if ms else "?"
    rate = alert.get("burn_rate_per_hour")
    return {"eta": f"ETA {hhmm(alert['eta_p50'])} UTC ({hhmm(alert.get('eta_p10'))}–{hhmm(alert.get('eta_p90'))})"
                   + (f", {rate:,.0f}/h" if rate is not None else ""),
            "eta_p50": alert["eta_p50"], "burn_rate_per_hour": rate}


def forecast_band(alert: dict[str, Any] | None, use: BudgetUse, now: int) -> dict[str, Any] | None:
    """The breach forecast drawn on a budget window's chart: from today's spend, one line per ETA
    quantile (p10, p50, p90) to the limit at that ETA, or, when the ETA falls after the window's
    end, to the spend projected there on the same straight line. None without a live forecast."""
    if alert is None or alert.get("eta_p50") is None:
        return None
    start = min(max(now, use.window_start), use.window_end)
    band = {}
    for name in ("p10", "p50", "p90"):
        eta = alert.get(f"eta_{name}") or alert["eta_p50"]
        eta = max(eta, start + 1)
        if eta <= use.window_end:
            band[name] = [[start, use.spent], [eta, use.limit]]
        else:
            share = (use.window_end - start) / (eta - start)
            band[name] = [[start, use.spent], [use.window_end, round(use.spent + (use.limit - use.spent) * share)]]
    return band


class Views:
    def __init__(self, live: LiveState, run: Runner, windows: str):
        self.live, self.run = live, run
        self.windows = [w.strip() for w in windows.split(",") if w.strip()]

    def _forecast(self, use: BudgetUse) -> dict[str, Any] | None:
        return self.live.alerts.forecast(use.budget_id, use.scope, use.window_start)

    # --- Now -------------------------------------------------------------------------------

    def now_live(self) -> dict[str, Any]:
        return {"restricted": self.live.restricted(), "alerts": self.live.alerts.latest(limit=50)}

    def now_spend(self) -> dict[str, Any]:
        """Orgs and teams: today's cost and their budgets' use; other budgets below them."""
        now = _now()
        scopes = {row["scope"]: {**row, "budgets": []} for row in queries.org_team_today(self.run, now)}
        other = []
        for use in reports.budget_use(self.run, self.live.budgets(), now):
            if use.scope.partition(":")[0] in ("org", "team"):
                scopes.setdefault(use.scope, {"scope": use.scope, "micro_usd": 0, "tokens": 0,
                                              "budgets": []})["budgets"].append(use_dict(use, self._forecast(use)))
            else:
                other.append(use_dict(use, self._forecast(use)))
        ordered = sorted(scopes.values(), key=lambda s: (-max([b["percent"] or 0 for b in s["budgets"]] or [-1]),
                                                         -s["micro_usd"], s["scope"]))
        return {"scopes": ordered, "other": other, "as_of": now}

    # --- Scope -----------------------------------------------------------------------------

    def scope_live(self, scope: str) -> dict[str, Any]:
        return {"state": self.live.state(scope), "alerts": self.live.alerts.latest(scope, limit=20)}

    def scope_budgets(self, scope: str) -> list[dict[str, Any]]:
        """The budgets that apply to `scope` (by value or pattern), retargeted to it."""
        return [{**b, "scope": scope} for b in self.live.budgets() if matches(b["scope"], scope)]

    def scope_spend(self, scope: str, range_name: str | None = None, metric: str = "cost_micro_usd",
                    start: str | None = None, end: str | None = None) -> dict[str, Any]:
        scope, now = concrete_scope(scope), _now()
        budgets = self.scope_budgets(scope)
        uses = reports.budget_use(self.run, budgets, now, per_budget=1)
        range_name = range_name or (WINDOW_RANGE if uses else "24h")
        if range_name == WINDOW_RANGE and not uses:
            raise ReportError(f"{scope} has no budget, so no budget window to chart")
        chart = (self._window_chart(scope, uses[0], now) if range_name == WINDOW_RANGE
                 else self._range_chart(scope, TimeRange.parse(range_name, start, end, now), metric))
        detail_period = TimeRange.parse("24h" if range_name == WINDOW_RANGE else range_name, start, end, now).period
        kind = scope.partition(":")[0]
        return {
            "scope": scope, "budgets": [use_dict(u, self._forecast(u)) for u in uses], "windows": self._windows(scope, budgets, now),
            "chart": chart, "range": range_name,
            "agents": self._agents_under(scope, detail_period),
            "runs": queries.runs_under(self.run, detail_period, scope) if kind in queries.RUN_FILTERS else [],
            "models": _dicts(reports.models(self.run, detail_period, scope)),
            "alert_history": [{**a, "created_at": epoch_ms(a["created_at"])} for a in
                              _dicts(reports.alerts(self.run, Period(now - 7 * reports.DAY, now + 1), scope, 20))],
            "changes": queries.control_changes(self.run, scope),
        }

    def _windows(self, scope: str, budgets: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
        """Spend in the current window of each window the worker tracks and each budget names."""
        specs = {(w, "UTC") for w in self.windows} | {(b["window"], b.get("timezone") or "UTC") for b in budgets}
        windows = sorted(((w, tz, *parse_window(w, tz).bounds(now)) for w, tz in specs),
                         key=lambda w: (w[3] - w[2], w[0]))
        totals = queries.window_spend(self.run, scope, [(start, end) for _, _, start, end in windows])
        return [{"window": w, "timezone": tz, "start": start, "end": end, **total}
                for (w, tz, start, end), total in zip(windows, totals)]

    def _agents_under(self, scope: str, period: Period) -> list[dict[str, Any]]:
        """Agents spending under global (the agent rollups), an org or a team (agents_by_hour)."""
        if scope == "global":
            rows = _dicts(reports.top(self.run, period, "agent", limit=10))
            return [{"name": r["scope"].removeprefix("agent:"), "micro_usd": r["micro_usd"],
                     "tokens": int(r["input"]) + int(r["output"]), "calls": r["calls"]} for r in rows]
        if scope.partition(":")[0] in ("org", "team"):
            return queries.agents_under(self.run, period, scope)
        return []

    def _window_chart(self, scope: str, use: BudgetUse, now: int) -> dict[str, Any]:
        """Cumulative spend of the budget's metric since its window started, with its limit."""
        period = Period(use.window_start, min(now + 1, use.window_end))
        grain = TimeRange(Period(use.window_start, use.window_end), WINDOW_RANGE).grain
        points = queries.series(self.run, period, grain, scope, use.metric).get(scope, [])
        total, cumulative = 0, [[use.window_start, 0]]
        for t, value in points:  # spend within a bucket is drawn as rising over that bucket
            cumulative += [[t, total], [min(t + grain, now), total + value]]
            total += value
        return {"metric": use.metric, "start": use.window_start, "end": use.window_end, "cumulative": True,
                "series": {scope: cumulative}, "lines": [{"label": f"limit ({use.budget_id})", "value": use.limit}],
                "forecast": forecast_band(self._forecast(use), use, now)}

    def _range_chart(self, scope: str, time_range: TimeRange, metric: str) -> dict[str, Any]:
        period = time_range.period
        return {"metric": metric, "start": period.start_ms, "end": period.end_ms, "cumulative": False,
                "grain": time_range.grain, "lines": [], "forecast": None,
                "series": queries.series(self.run, period, time_range.grain, scope, metric)}

    # --- Top spenders and history ----------------------------------------------------------

    def top(self, kind: str, metric: str, range_name: str | None, start: str | None = None,
            end: str | None = None) -> dict[str, Any]:
        time_range = TimeRange.parse(range_name, start, end)
        result = reports.top(self.run, time_range.period, kind, metric, limit=20)
        return {"kind": kind, "metric": metric, "range": time_range.name, "start": time_range.period.start_ms,
                "end": time_range.period.end_ms, "rows": _dicts(result)}

    def history(self, scope: str, metric: str, range_name: str | None, start: str | None = None,
                end: str | None = None) -> dict[str, Any]:
        time_range = TimeRange.parse(range_name, start, end)
        if scope in KINDS and scope != "global":
            scope += ":*"
        return {"scope": scope, "range": time_range.name, **self._range_chart(scope, time_range, metric)}


def _dicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(result["columns"], row)) for row in result["rows"]]


def epoch_ms(value: Any) -> int:
    """A ClickHouse DateTime64 as it comes through the SQL runner's JSON (text, UTC) in epoch ms."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return int((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def _now() -> int:
    return int(time.time() * 1000)
