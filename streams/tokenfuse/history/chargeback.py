"""`tokenfuse report chargeback`: per group (team, org, agent, user, model or tag value) for one
calendar month (UTC): budget vs actual vs forecast, usage, cost per run, cached-token share, the
alerts and blocks of the period, and shared cost allocated (tokenfuse.history.shared_cost).

- actual: the group's own cost (`direct`), from the rollups; `charged` adds its shared cost.
- budget: the binding cost budget of the group for the month, as in force at the period's end:
  budgets whose scope is the group or a pattern holding it (`team:*`), an exact scope before a
  pattern, then the smallest monthly amount (a day budget counts once per day of the month, a
  tumbling window once per window length in the month; rolling windows are rate limits, left out).
- forecast: for the current month, the month-to-date cost projected linearly to the month's end
  (direct x month length / time elapsed); for a past month, the actual.
- variance: forecast - budget (positive = over budget), and as % of the budget.
- runs: distinct run ids of the group's events (the per-day run sets of runs_by_day);
  cost per run = direct cost / runs.
- cached share: cached input tokens / input tokens.
Every user value is a bound parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tokenfuse.history.reports import Period, ReportError, Runner
from tokenfuse.history.shared_cost import UNTAGGED, Allocation, Rule, allocate, check
from tokenfuse.usage.scopes import matches
from tokenfuse.usage.windows import parse_window

# --by kinds: the scope kinds a report groups by (`tag` with a key).
KINDS = ("team", "org", "agent", "user", "model", "tag")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Grouping:
    """What `--by` names: a kind and, for tags, the key."""

    kind: str
    tag: str = ""

    @classmethod
    def parse(cls, by: str) -> "Grouping":
        kind, _, tag = by.partition(":")
        if kind not in KINDS or (kind == "tag") != bool(tag) or "=" in tag:
            raise ReportError(f"--by must be one of {', '.join(k for k in KINDS if k != 'tag')} or tag:KEY, "
                              f"got {by!r}")
        return cls(kind, tag)

    @property
    def prefix(self) -> str:
        return f"tag:{self.tag}=" if self.kind == "tag" else f"{self.kind}:"

    @property
    def name(self) -> str:
        return f"tag:{self.tag}" if self.kind == "tag" else self.kind


@dataclass(frozen=True)
class Month:
    """A calendar month (UTC) and the time the report is made, for the forecast."""

    start_ms: int
    end_ms: int
    now_ms: int
    label: str

    @classmethod
    def parse(cls, text: str, now_ms: int) -> "Month":
        m = _MONTH.match(text)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ReportError(f"--period must be a month like 2026-11, got {text!r}")
        year, month = int(m.group(1)), int(m.group(2))
        start = datetime(year, month, 1, tzinfo=timezone.utc)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        if start_ms >= now_ms:
            raise ReportError(f"--period {text} has not started yet")
        return cls(start_ms, end_ms, now_ms, text)

    @property
    def read_until(self) -> int:
        return min(self.end_ms, self.now_ms)

    @property
    def current(self) -> bool:
        return self.now_ms < self.end_ms

    def forecast(self, actual: int) -> int:
        if not self.current:
            return actual
        return actual * (self.end_ms - self.start_ms) // max(self.now_ms - self.start_ms, 1)


@dataclass
class Row:
    group: str
    direct: int = 0
    shared: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    runs: int = 0
    alerts: int = 0
    blocks: int = 0
    budget_id: str = ""
    budget: int | None = None
    forecast: int = 0
    models: dict[str, int] = field(default_factory=dict)  # cost per model

    @property
    def charged(self) -> int:
        return self.direct + self.shared

    @property
    def variance(self) -> int | None:
        return None if self.budget is None else self.forecast - self.budget

    @property
    def variance_percent(self) -> float | None:
        return None if not self.budget else round(100 * (self.forecast - self.budget) / self.budget, 1)

    @property
    def cost_per_run(self) -> int | None:
        return self.direct // self.runs if self.runs else None

    @property
    def cached_share(self) -> float | None:
        return round(self.cached_tokens / self.input_tokens, 4) if self.input_tokens else None


@dataclass
class Report:
    month: Month
    grouping: Grouping
    total: int  # the ClickHouse total for the month, micro-USD
    rows: list[Row]
    allocation: Allocation

    @property
    def unallocated(self) -> int:
        return self.allocation.unallocated


def chargeback(run: Runner, month: Month, grouping: Grouping, rules: list[Rule] | None = None) -> Report:
    rules = rules or []
    check(rules, grouping.prefix, grouping.name)
    rows, total = _usage(run, month, grouping)
    untagged = total - sum(r.direct for r in rows.values())
    if untagged or any(rule.source == UNTAGGED for rule in rules):
        rows[UNTAGGED] = Row(UNTAGGED, direct=untagged)
    _runs(run, month, grouping, rows)
    _alerts_and_blocks(run, month, grouping, rows)
    allocation = allocate({g: r.direct for g, r in rows.items()}, rules)
    for group, amount in allocation.shared.items():
        rows.setdefault(group, Row(group)).shared = amount
    budgets = budgets_at(run, month.read_until)
    for row in rows.values():
        row.forecast = month.forecast(row.direct)
        if row.group != UNTAGGED:
            row.budget_id, row.budget = binding_budget(budgets, row.group, month) or ("", None)
    ordered = sorted(rows.values(), key=lambda r: (r.group == UNTAGGED, -r.charged, r.group))
    return Report(month, grouping, total, ordered, allocation)


def _usage(run: Runner, month: Month, grouping: Grouping) -> tuple[dict[str, Row], int]:
    table, params = Period(month.start_ms, month.read_until).rollup()
    result = run(f"SELECT scope, model, sum(events), sum(input_tokens), sum(output_tokens), sum(cached_tokens), "
                 f"sum(cost_micro_usd) FROM {table} "
                 "WHERE (startsWith(scope, {prefix:String}) OR scope = 'global') "
                 "AND bucket >= toDateTime({start_s:Int64}, 'UTC') AND bucket < toDateTime({end_s:Int64}, 'UTC') "
                 "GROUP BY scope, model", {**params, "prefix": grouping.prefix})
    rows: dict[str, Row] = {}
    total = 0
    for scope, model, calls, input_tokens, output_tokens, cached, cost in result["rows"]:
        if scope == "global":
            total += int(cost)
            continue
        row = rows.setdefault(scope, Row(scope))
        row.calls += int(calls)
        row.input_tokens += int(input_tokens)
        row.output_tokens += int(output_tokens)
        row.cached_tokens += int(cached)
        row.direct += int(cost)
        row.models[model] = row.models.get(model, 0) + int(cost)
    return rows, total


def _runs(run: Runner, month: Month, grouping: Grouping, rows: dict[str, Row]) -> None:
    # From the per-day sets of run ids (runs_by_day, migration 014): the union of the period's days.
    # Months start and end at UTC midnight; the current month's last day holds the events so far.
    result = run("SELECT scope, uniqExactMerge(runs) FROM runs_by_day WHERE startsWith(scope, {prefix:String}) "
                 "AND day >= toDate(fromUnixTimestamp64Milli({start:Int64}, 'UTC')) "
                 "AND day <= toDate(fromUnixTimestamp64Milli({last:Int64}, 'UTC')) GROUP BY scope",
                 {"prefix": grouping.prefix, "start": month.start_ms, "last": month.read_until - 1})
    for key, runs in result["rows"]:
        if key in rows:
            rows[key].runs = int(runs)


def _alerts_and_blocks(run: Runner, month: Month, grouping: Grouping, rows: dict[str, Row]) -> None:
    params = {"prefix": grouping.prefix, "start": month.start_ms, "end": month.read_until}
    alerts = run("SELECT scope, uniqExact(alert_id) FROM alerts WHERE startsWith(scope, {prefix:String}) "
                 "AND created_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
                 "AND created_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC') GROUP BY scope", params)
    blocks = run("SELECT scope, uniqExact(kafka_partition, kafka_offset) FROM control_changes "
                 "WHERE state = 'block' AND startsWith(scope, {prefix:String}) "
                 "AND issued_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
                 "AND issued_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC') GROUP BY scope", params)
    for field_name, result in (("alerts", alerts), ("blocks", blocks)):
        for scope, count in result["rows"]:
            row = rows.setdefault(scope, Row(scope))
            setattr(row, field_name, int(count))


def budgets_at(run: Runner, at_ms: int) -> list[dict[str, Any]]:
    """The cost budgets in force at `at_ms` (their latest version published before it)."""
    result = run("SELECT budget_id, deleted, scope, metric, window, timezone, `limit` FROM budgets_history "
                 "WHERE updated_at < fromUnixTimestamp64Milli({at:Int64}, 'UTC') "
                 "ORDER BY budget_id, updated_at DESC, kafka_offset DESC LIMIT 1 BY budget_id", {"at": at_ms})
    return [{"id": b, "scope": s, "window": w, "timezone": tz, "limit": int(limit)}
            for b, deleted, s, metric, w, tz, limit in result["rows"]
            if not deleted and metric == "cost_micro_usd" and not w.startswith("rolling:")]


def binding_budget(budgets: list[dict[str, Any]], group: str, month: Month) -> tuple[str, int] | None:
    """(budget id, amount for the month) of the budget that binds `group`: exact scope first,
    then the smallest monthly amount."""
    candidates = []
    for budget in budgets:
        if matches(budget["scope"], group):
            amount = monthly_amount(budget, month)
            candidates.append((budget["scope"] != group, amount, budget["id"]))
    if not candidates:
        return None
    _, amount, budget_id = min(candidates)
    return budget_id, amount


def monthly_amount(budget: dict[str, Any], month: Month) -> int:
    spec = parse_window(budget["window"], budget["timezone"])
    length = month.end_ms - month.start_ms
    if spec.kind == "calendar":
        return budget["limit"] if spec.unit == "month" else budget["limit"] * (length // 86_400_000)
    return budget["limit"] * length // spec.size_ms
