"""The dashboard's reads from ClickHouse, beside the reports of tokenfuse.history.reports.

Spend comes from the per-scope rollups (usage_by_minute/hour/day), at the grain the time range
needs, and the agents under an org or team from agents_by_hour, so a page reads pre-aggregated
rows whatever the event count. Runs are not rolled up (see deploy/clickhouse/005): the runs of a
team or an agent come from the raw events, where the sort key narrows the read to that team or
agent, bounded by the page's period. Every user value is a bound parameter; SQL fragments come
from the fixed tables here and in reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tokenfuse.history.reports import (DAY, HOUR, IN_PERIOD, METRICS, MINUTE, Period, ReportError, Runner, scope_filter,
                                       union_all)

# Time ranges the pages offer, by name.
RANGES = {"1h": HOUR, "6h": 6 * HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
SERIES_PER_PATTERN = 5  # a pattern (team:*) draws its biggest scopes, one line each
_PERIOD = IN_PERIOD.replace("{", "{{").replace("}", "}}")  # inside the str.format templates below

SERIES_SQL = (
    "SELECT intDiv(toUnixTimestamp(bucket), {{grain_s:UInt32}}) * {{grain_s:UInt32}} * 1000 AS t, scope, "
    "{metric} AS v FROM {table} WHERE {where} AND " + _PERIOD + "{top} GROUP BY t, scope ORDER BY t, scope")
TOP_SCOPES_SQL = (" AND scope IN (SELECT scope FROM {table} WHERE {where} AND " + _PERIOD
                  + " GROUP BY scope ORDER BY {metric} DESC, scope LIMIT {{series:UInt32}})")
ORG_TEAM_TODAY_SQL = (
    "SELECT scope, sum(cost_micro_usd) AS micro_usd, sum(input_tokens + output_tokens) AS tokens "
    "FROM usage_by_day WHERE (startsWith(scope, 'org:') OR startsWith(scope, 'team:')) "
    "AND bucket = toDateTime({day_s:Int64}, 'UTC') GROUP BY scope ORDER BY micro_usd DESC, scope LIMIT {limit:UInt32}")
CONTROL_CHANGES_SQL = (
    "SELECT toUnixTimestamp64Milli(issued_at) AS issued_at, state, reason, budget_id, spent, `limit`, "
    "toUnixTimestamp64Milli(until) AS until FROM control_changes WHERE scope = {scope:String} AND signed "
    "ORDER BY issued_at DESC, kafka_offset DESC LIMIT {limit:UInt32}")
AGENTS_SQL = (  # agents_by_hour (deploy/clickhouse/011): org and team scopes only
    "SELECT agent AS name, sum(cost_micro_usd) AS micro_usd, sum(input_tokens + output_tokens) AS tokens, "
    "sum(events) AS calls FROM agents_by_hour WHERE scope = {scope:String} AND " + IN_PERIOD + " "
    "GROUP BY name ORDER BY micro_usd DESC, name LIMIT {limit:UInt32}")
# Runs are not rolled up: read from usage_events where its sort key (org, team, agent, event_time)
# narrows the read to one team or one agent.
RUN_FILTERS = {"team": "org = {a:String} AND team = {b:String}", "agent": "agent = {a:String}"}
RUNS_SQL = (
    "SELECT assumeNotNull(run) AS name, sum(cost_micro_usd) AS micro_usd, sum(input_tokens + output_tokens) AS tokens, "
    "count() AS calls FROM usage_events WHERE {where} AND ifNull(run, '') != '' "
    "AND event_time >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC') "
    "AND event_time < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC') "
    "GROUP BY name ORDER BY micro_usd DESC, name LIMIT {{limit:UInt32}}")
WINDOW_SQL = ("SELECT {n} AS n, sum(cost_micro_usd) AS micro_usd, sum(input_tokens + output_tokens) AS tokens, "
              "sum(events) AS calls FROM {table} WHERE {where} AND " + _PERIOD)


@dataclass(frozen=True)
class TimeRange:
    """A page's time range: a named one back from now, or explicit ISO start/end."""

    period: Period
    name: str

    @classmethod
    def parse(cls, name: str | None, start: str | None = None, end: str | None = None,
              now_ms: int | None = None) -> "TimeRange":
        if start:
            return cls(Period.parse(start=start, end=end, now_ms=now_ms), "custom")
        name = name or "24h"
        if name not in RANGES:
            raise ReportError(f"range must be one of {', '.join(RANGES)} (or from/to times)")
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        return cls(Period(now_ms - RANGES[name], now_ms), name)

    @property
    def grain(self) -> int:
        """Chart bucket: minutes up to 6 hours, hours up to 8 days, days beyond."""
        span = self.period.end_ms - self.period.start_ms
        return MINUTE if span <= 6 * HOUR else HOUR if span <= 8 * DAY else DAY


def series(run: Runner, period: Period, grain: int, scope: str, metric: str) -> dict[str, list[list[int]]]:
    """Spend per time bucket, {scope: [[t_ms, value], ...]}; a pattern gives its biggest scopes."""
    if metric not in METRICS:
        raise ReportError(f"metric must be one of {', '.join(METRICS)}")
    table, params = period.source(scope, grain)
    where, scope_params = scope_filter(scope)
    top = TOP_SCOPES_SQL.format(table=table, where=where, metric=METRICS[metric]) if "*" in scope else ""
    rows = run(SERIES_SQL.format(metric=METRICS[metric], table=table, where=where, top=top),
               {**params, **scope_params, "grain_s": grain // 1000, "series": SERIES_PER_PATTERN})["rows"]
    out: dict[str, list[list[int]]] = {}
    for t, name, value in rows:
        out.setdefault(name, []).append([int(t), int(value)])
    return out


def org_team_today(run: Runner, now_ms: int, limit: int = 100) -> list[dict[str, Any]]:
    """Cost and tokens of every org and team in the current UTC day (the day rollup)."""
    rows = run(ORG_TEAM_TODAY_SQL, {"day_s": now_ms // DAY * DAY // 1000, "limit": limit})["rows"]
    return [{"scope": s, "micro_usd": int(c), "tokens": int(t)} for s, c, t in rows]


def control_changes(run: Runner, scope: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest verified control states published for one scope, newest first."""
    return _records(run(CONTROL_CHANGES_SQL, {"scope": scope, "limit": limit}))


def window_spend(run: Runner, scope: str, windows: list[tuple[int, int]]) -> list[dict[str, int]]:
    """Cost, tokens and calls of one scope in each [start, end) window, in one query."""
    where, scope_params = scope_filter(scope)
    parts = []
    for n, (start, end) in enumerate(windows):
        table, params = Period(start, max(end, start + 1)).source(scope)
        parts.append((WINDOW_SQL.format(n=n, table=table, where=where), {**params, **scope_params}))
    totals = {n: {"micro_usd": 0, "tokens": 0, "calls": 0} for n in range(len(windows))}
    for n, micro_usd, tokens, calls in (run(*union_all(parts))["rows"] if parts else []):
        totals[int(n)] = {"micro_usd": int(micro_usd), "tokens": int(tokens), "calls": int(calls)}
    return [totals[n] for n in range(len(windows))]


def agents_under(run: Runner, period: Period, scope: str, limit: int = 10) -> list[dict[str, Any]]:
    """The agents that spent most under an org or team scope in the period (hour grain)."""
    _, params = period.rollup(HOUR)
    return _records(run(AGENTS_SQL, {**params, "scope": scope, "limit": limit}))


def runs_under(run: Runner, period: Period, scope: str, limit: int = 10) -> list[dict[str, Any]]:
    """The runs that spent most under a team or agent scope in the period (raw events)."""
    kind, _, value = scope.partition(":")
    a, _, b = value.partition("/")
    return _records(run(RUNS_SQL.format(where=RUN_FILTERS[kind]),
                        {"a": a, "b": b, "start_ms": period.start_ms, "end_ms": period.end_ms, "limit": limit}))


def _records(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(result["columns"], row)) for row in result["rows"]]
