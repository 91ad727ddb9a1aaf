"""The queries behind `tokenfuse report`: spend, top spenders, budget utilisation, models, alerts.

Every value a user gives is a bound parameter (`{name:Type}`, bound by ClickHouse itself); the
only SQL fragments chosen from user input come from fixed tables in this module (metric
expressions, rollup table names). Spend comes from the per-scope rollups, so a report reads a few
thousand pre-aggregated rows instead of millions of events (run scopes, which are not rolled up,
come from the raw events, ordered and partitioned by time); periods are widened to whole minutes
(whole hours beyond two days, whole days when aligned) to match the rollups' buckets.

A report takes `run(query, parameters) -> {"columns": [...], "rows": [[...]]}`: the sink's
read-only endpoint, or a History opened in this process.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from tokenfuse.errors import TokenfuseError
from tokenfuse.usage.scopes import KINDS, validate_scope
from tokenfuse.usage.windows import parse_duration_ms, parse_window

Runner = Callable[[str, dict[str, Any]], dict[str, Any]]

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
# Sums over rollup rows, by budget metric name: fixed SQL, never user text.
METRICS = {
    "cost_micro_usd": "sum(cost_micro_usd)",
    "total_tokens": "sum(input_tokens + output_tokens)",
    "input_tokens": "sum(input_tokens)",
    "output_tokens": "sum(output_tokens)",
    "events": "sum(events)",
}
# Aliases differ from column names: ClickHouse would substitute an alias into later sums.
_TOTALS = ("sum(events) AS calls, sum(input_tokens) AS input, sum(output_tokens) AS output, "
           "sum(cached_tokens) AS cached, sum(cost_micro_usd) AS micro_usd, round(micro_usd / 1e6, 6) AS usd")
RUN_SCOPE = "concat('run:', assumeNotNull(run))"
IN_PERIOD = "bucket >= toDateTime({start_s:Int64}, 'UTC') AND bucket < toDateTime({end_s:Int64}, 'UTC')"


class ReportError(TokenfuseError):
    """A report's arguments are wrong (bad period, scope...)."""


@dataclass(frozen=True)
class Period:
    start_ms: int
    end_ms: int

    @classmethod
    def parse(cls, since: str | None = None, start: str | None = None, end: str | None = None,
              now_ms: int | None = None) -> "Period":
        """`since` a duration back from now (24h, 7d), or `start`/`end` ISO times (UTC unless
        they carry an offset); `end` defaults to now."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        end_ms = parse_time(end, "--to") if end else now_ms
        if start:
            start_ms = parse_time(start, "--from")
        else:
            try:
                start_ms = end_ms - parse_duration_ms(since or "24h")
            except ValueError as exc:
                raise ReportError(f"--since: {exc}") from None
        if start_ms >= end_ms:
            raise ReportError("the period is empty: its start is not before its end")
        return cls(start_ms, end_ms)

    def rollup(self, grain: int | None = None) -> tuple[str, dict[str, int]]:
        """The rollup table and bound period covering this period: the coarsest grain both ends
        align to (or the `grain` asked for: MINUTE, HOUR or DAY); beyond two days at least hours
        (minute rollups are kept 35 days)."""
        long = self.end_ms - self.start_ms > 2 * DAY
        grains = ((DAY, "usage_by_day"), (HOUR, "usage_by_hour")) + (() if long else ((MINUTE, "usage_by_minute"),))
        if grain is not None:
            grains = tuple(g for g in grains if g[0] >= grain)[-1:] or grains[-1:]
        for grain, table in grains:
            if self.start_ms % grain == 0 and self.end_ms % grain == 0:
                break
        else:
            grain, table = grains[-1]
        start = self.start_ms - self.start_ms % grain
        end = -(-self.end_ms // grain) * grain
        return table, {"start_s": start // 1000, "end_s": end // 1000}

    def source(self, scope: str | None, grain: int | None = None) -> tuple[str, dict[str, int]]:
        """What to read `scope` from over this period: a rollup, or for runs (short-lived and
        countless, so not rolled up) the raw events shaped like a rollup."""
        if scope is None or scope.partition(":")[0] != "run":
            return self.rollup(grain)
        _, params = self.rollup(grain)
        return (f"(SELECT {RUN_SCOPE} AS scope, toStartOfMinute(event_time) AS bucket, provider, model, "
                "1 AS events, input_tokens, output_tokens, cached_tokens, cost_micro_usd FROM usage_events "
                "WHERE ifNull(run, '') != '' AND event_time >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') "
                "AND event_time < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC'))",
                {**params, "start_ms": self.start_ms, "end_ms": self.end_ms})


def parse_time(text: str, option: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"{option}: {text!r} is not an ISO time like 2026-11-01 or 2026-11-01T12:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def scope_filter(scope: str | None) -> tuple[str, dict[str, Any]]:
    """`agent:bot-1` one scope; `agent:*`, `team:acme/*`, `tag:env=*` or a bare kind (`agent`)
    every scope of that pattern; None every scope but `global`."""
    if not scope:
        return "scope != 'global'", {}
    if scope in KINDS and scope != "global":
        scope += ":*"
    problem = validate_scope(scope)
    if problem:
        raise ReportError(problem)
    if scope.endswith("*"):
        return "startsWith(scope, {prefix:String}) AND scope != {prefix:String}", {"prefix": scope[:-1]}
    return "scope = {scope:String}", {"scope": scope}


def spend(run: Runner, period: Period, scope: str | None, every: str | None = None) -> dict[str, Any]:
    """Spend per scope over the period; with every = hour|day, per bucket too."""
    table, params = period.source(scope)
    where, scope_params = scope_filter(scope)
    if every not in (None, "hour", "day"):
        raise ReportError("--every must be hour or day")
    bucket = {"hour": "toStartOfHour(bucket) AS time, ", "day": "toStartOfDay(bucket) AS time, ", None: ""}[every]
    group = "time, scope" if every else "scope"
    order = "time, micro_usd DESC" if every else "micro_usd DESC"
    return run(f"SELECT {bucket}scope, {_TOTALS} FROM {table} WHERE {where} AND {IN_PERIOD} "
               f"GROUP BY {group} ORDER BY {order}, scope", {**params, **scope_params})


def top(run: Runner, period: Period, kind: str = "agent", metric: str = "cost_micro_usd",
        limit: int = 10) -> dict[str, Any]:
    """The `limit` scopes of a kind that spent most of `metric` in the period."""
    if metric not in METRICS:
        raise ReportError(f"--metric must be one of {', '.join(METRICS)}")
    if kind == "global" or kind not in KINDS:
        raise ReportError(f"--kind must be one of {', '.join(k for k in KINDS if k != 'global')}")
    table, params = period.source(kind)
    return run(f"SELECT scope, {METRICS[metric]} AS amount, {_TOTALS} FROM {table} "
               f"WHERE startsWith(scope, {{prefix:String}}) AND {IN_PERIOD} GROUP BY scope "
               f"ORDER BY amount DESC, scope LIMIT {{limit:UInt32}}",
               {**params, "prefix": f"{kind}:", "limit": limit})


def models(run: Runner, period: Period, scope: str | None = None) -> dict[str, Any]:
    """Spend per provider and model, over everything or within one scope."""
    table, params = period.source(scope)
    where, scope_params = scope_filter(scope or "global")
    return run(f"SELECT provider, model, {_TOTALS} FROM {table} WHERE {where} AND {IN_PERIOD} "
               f"GROUP BY provider, model ORDER BY micro_usd DESC, provider, model", {**params, **scope_params})


def alerts(run: Runner, period: Period, scope: str | None = None, limit: int = 100) -> dict[str, Any]:
    where, params = scope_filter(scope) if scope else ("1", {})
    return run("SELECT created_at, scope, kind, action, budget_id, threshold_percent, metric, spent, `limit`, "
               f"message FROM alerts WHERE {where} "
               "AND created_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
               "AND created_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC') "
               "ORDER BY created_at DESC, alert_id LIMIT {limit:UInt32}",
               {**params, "start": period.start_ms, "end": period.end_ms, "limit": limit})


def latest_budgets(run: Runner) -> list[dict[str, Any]]:
    """Every current budget as the history holds it (the latest version of each, tombstones out)."""
    rows = run("SELECT budget_id, deleted, scope, metric, window, timezone, `limit` FROM budgets_history "
               "ORDER BY budget_id, kafka_offset DESC LIMIT 1 BY budget_id", {})["rows"]
    return [{"id": budget_id, "scope": scope, "metric": metric, "window": window, "timezone": tz, "limit": int(limit)}
            for budget_id, deleted, scope, metric, window, tz, limit in rows if not deleted]


@dataclass(frozen=True)
class BudgetUse:
    """One budget's spend for one scope value in the window holding a moment."""

    budget_id: str
    scope: str
    metric: str
    window: str
    window_start: int  # epoch ms
    window_end: int
    spent: int
    limit: int

    @property
    def percent(self) -> float | None:
        return round(100 * self.spent / self.limit, 1) if self.limit else None


def union_all(parts: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """One query made of several (one round trip to the sink instead of many): part i's bound
    parameters are renamed `{name_i:Type}`, each part is parenthesised (it may ORDER and LIMIT)."""
    sqls, parameters = [], {}
    for i, (sql, params) in enumerate(parts):
        sqls.append("(" + re.sub(r"\{(\w+):", lambda m: f"{{{m.group(1)}_{i}:", sql) + ")")
        parameters.update({f"{name}_{i}": value for name, value in params.items()})
    return " UNION ALL ".join(sqls), parameters


def budget_use(run: Runner, budgets: list[dict[str, Any]], at_ms: int, per_budget: int = 10) -> list[BudgetUse]:
    """Spend against limit of `budgets` (Budget records: id, scope, metric, window, timezone, limit)
    in the window holding `at_ms`, in one query; a `*` budget gives its `per_budget` biggest scope
    values. Windows come from tokenfuse.usage.windows, widened to whole minutes (rolling windows
    too). Sorted by % used, highest first."""
    budgets = [b for b in budgets if b["metric"] in METRICS]
    parts, windows = [], []
    for n, budget in enumerate(budgets):
        start, end = parse_window(budget["window"], budget.get("timezone") or "UTC").bounds(at_ms)
        table, params = Period(start, end).source(budget["scope"])
        where, scope_params = scope_filter(budget["scope"])
        parts.append((f"SELECT {n} AS n, scope, {METRICS[budget['metric']]} AS spent FROM {table} "
                      f"WHERE {where} AND {IN_PERIOD} GROUP BY scope ORDER BY spent DESC, scope LIMIT {{top:UInt32}}",
                      {**params, **scope_params, "top": per_budget}))
        windows.append((start, end))
    spent: dict[int, list[tuple[str, int]]] = {n: [] for n in range(len(budgets))}
    if parts:
        for n, scope, amount in run(*union_all(parts))["rows"]:
            spent[int(n)].append((scope, int(amount)))
    out = []
    for n, budget in enumerate(budgets):
        values = spent[n] or ([] if budget["scope"].endswith("*") else [(budget["scope"], 0)])
        out += [BudgetUse(budget["id"], scope, budget["metric"], budget["window"], *windows[n], amount,
                          int(budget["limit"])) for scope, amount in values]
    out.sort(key=lambda u: (-(u.percent or 0), u.budget_id, u.scope))
    return out


UTILISATION_COLUMNS = ["budget_id", "scope", "metric", "window", "window_start", "window_end", "spent", "limit",
                       "percent"]


def utilisation(run: Runner, at_ms: int | None = None, per_budget: int = 10) -> dict[str, Any]:
    """Spend against limit for every current budget (as the history holds them) in the window
    holding `at_ms` (default now)."""
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    uses = budget_use(run, latest_budgets(run), at_ms, per_budget)
    return {"columns": UTILISATION_COLUMNS,
            "rows": [[u.budget_id, u.scope, u.metric, u.window, _iso(u.window_start), _iso(u.window_end), u.spent,
                      u.limit, u.percent] for u in uses]}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
