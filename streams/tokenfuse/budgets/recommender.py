"""`tokenfuse budgets recommend`: from ClickHouse history and the budgets in force to proposed
budgets, with the evidence behind each (options, backtests, trend) and the parent fit.

The arithmetic is in tokenfuse.budgets.recommend, the parent rules in tokenfuse.budgets.parent,
the query in tokenfuse.history.window_spend; the YAML in tokenfuse.budgets.recommend_yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from tokenfuse.budgets import parent as parents
from tokenfuse.budgets.recommend import (MIN_WINDOWS, PERCENTILES, SAFETY_MARGIN, Backtest, Evidence, Option,
                                         Thresholds, backtest, evidence)
from tokenfuse.budgets.spec import MAX_PERCENT
from tokenfuse.errors import TokenfuseError
from tokenfuse.history.reports import Runner
from tokenfuse.history.window_spend import complete_windows, spend_per_window, window_spec
from tokenfuse.usage.scopes import validate_scope
from tokenfuse.usage.windows import parse_duration_ms

# CLI metric names: the budgets spec's, plus `cost` for cost_usd. cost_usd budgets are written
# with USD limits and stored (and queried) as cost_micro_usd.
METRIC_ALIASES = {"cost": "cost_usd", "cost_usd": "cost_usd", "cost_micro_usd": "cost_micro_usd",
                  "total_tokens": "total_tokens", "input_tokens": "input_tokens", "output_tokens": "output_tokens"}
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
_ID_METRIC = {"cost_usd": "cost", "cost_micro_usd": "cost", "total_tokens": "tokens", "input_tokens": "input",
              "output_tokens": "output"}


class RecommendError(TokenfuseError):
    """The recommend command's arguments are wrong."""


@dataclass(frozen=True)
class Request:
    scope: str
    window: str
    metric: str  # as written in the budgets file: cost_usd, cost_micro_usd, total_tokens, ...
    lookback: str
    timezone: str = "UTC"
    option: str = "p90"
    thresholds: Thresholds = Thresholds()
    min_windows: int = MIN_WINDOWS
    safety: float = SAFETY_MARGIN
    parent: str = "auto"  # a budget id, auto, or none
    parent_limit: str | None = None  # in the file's unit (USD for cost_usd)
    allow_overcommit: bool = False
    id_prefix: str = "rec"

    @property
    def stored_metric(self) -> str:
        return "cost_micro_usd" if self.metric == "cost_usd" else self.metric

    def budget_id(self, scope: str) -> str:
        return f"{self.id_prefix}-{_ID_UNSAFE.sub('.', scope)}-{self.window}-{_ID_METRIC[self.metric]}"


@dataclass
class Entry:
    """One scope's recommendation: the evidence, the option chosen, and the limit written after
    the parent fit with its own backtest."""

    evidence: Evidence
    chosen: Option
    limit: int
    final: Backtest
    parent: str = ""  # what scaled it, e.g. "budget org-daily (org:acme)"
    current: dict[str, Any] | None = None  # the budget in force with this entry's id, if any


@dataclass
class Result:
    request: Request
    first_window_ms: int
    end_ms: int
    windows: int  # complete windows in the lookback
    entries: list[Entry] = field(default_factory=list)
    too_short: dict[str, int] = field(default_factory=dict)  # scope -> windows of history
    fits: list[str] = field(default_factory=list)  # one line per parent group: how it was fitted
    kept: list[dict[str, Any]] = field(default_factory=list)  # budgets in force, kept in the file


def validate(request: Request) -> Request:
    """Raise RecommendError for every argument that cannot work, before any query."""
    if request.metric not in METRIC_ALIASES.values():
        raise RecommendError(f"--metric must be one of {', '.join(METRIC_ALIASES)}")
    if request.option not in PERCENTILES:
        raise RecommendError(f"--option must be one of {', '.join(PERCENTILES)}")
    t = request.thresholds
    if not 1 <= t.warn_percent < t.block_percent <= MAX_PERCENT:
        raise RecommendError(f"--warn and --block must satisfy 1 <= warn < block <= {MAX_PERCENT}")
    if request.min_windows < 2:
        raise RecommendError("--min-windows must be at least 2")
    if not 0 <= request.safety <= 10:
        raise RecommendError("--safety-margin must be between 0 and 10 (a fraction: 0.15 = 15%)")
    if request.parent_limit is not None and request.parent not in ("auto", "none"):
        raise RecommendError("--parent and --parent-limit are exclusive: give one")
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", request.id_prefix):
        raise RecommendError("--id-prefix may only contain letters, digits and . _ : -")
    if problem := validate_scope(request.scope):
        raise RecommendError(problem)
    if request.scope.startswith("run:"):
        raise RecommendError("--scope: runs are not rolled up (they are countless and short-lived); "
                             "recommend for agents, teams, users, models or tags")
    try:
        parse_duration_ms(request.lookback)
    except ValueError as exc:
        raise RecommendError(f"--lookback: {exc}") from None
    if request.parent_limit is not None:
        amount(request.parent_limit, request.metric, "--parent-limit")
    window_spec(request.window, request.timezone)
    return request


def check_parent(request: Request, budgets: dict[str, dict[str, Any]]) -> None:
    """An explicit --parent must be a budget in force (checked before any query)."""
    if request.parent not in ("auto", "none") and request.parent not in budgets:
        raise parents.ParentError(f"--parent: no budget with id {request.parent!r} in the budgets topic")


def amount(text: str, metric: str, option: str) -> int:
    """A limit given on the command line, in the file's unit, as a stored integer."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = Decimal(-1)
    scale = 10**6 if metric == "cost_usd" else 1
    if not number.is_finite() or number <= 0 or (number * scale) % 1:
        unit = "a USD amount (up to 6 decimals)" if scale > 1 else "a positive integer"
        raise RecommendError(f"{option} must be {unit}, got {text!r}")
    return int(number * scale)


def recommend(run: Runner, request: Request, budgets: dict[str, dict[str, Any]], now_ms: int) -> Result:
    validate(request)
    check_parent(request, budgets)
    windows = complete_windows(request.window, request.timezone, parse_duration_ms(request.lookback), now_ms)
    series = spend_per_window(run, request.scope, request.stored_metric, windows)
    result = Result(request, windows.starts[0], windows.end, len(windows.starts))
    for scope, values in series.items():
        if len(values) < request.min_windows:
            result.too_short[scope] = len(values)
            continue
        proof = evidence(scope, values, int(windows.mean_ms), request.thresholds, request.safety)
        chosen = proof.option(request.option)
        entry = Entry(proof, chosen, chosen.limit, chosen.backtest)
        entry.current = budgets.get(request.budget_id(scope))
        result.entries.append(entry)
    ids: dict[str, str] = {}
    for entry in result.entries:
        scope = entry.evidence.scope
        if (other := ids.setdefault(request.budget_id(scope), scope)) != scope:
            raise RecommendError(f"{scope!r} and {other!r} would both get the id {request.budget_id(scope)!r}")
    _fit_parents(result, budgets, series)
    result.kept = [b for b_id, b in sorted(budgets.items()) if b_id not in ids]
    return result


def _fit_parents(result: Result, budgets: dict[str, dict[str, Any]], series: dict[str, list[int]]) -> None:
    request = result.request
    by_scope = {e.evidence.scope: e for e in result.entries}
    if request.parent_limit is not None:
        limit = amount(request.parent_limit, request.metric, "--parent-limit")
        groups = [(parents.Parent("all", limit, "--parent-limit"), list(by_scope))]
    elif request.parent == "none" or not by_scope:
        return
    else:
        found = parents.find_parents(budgets, list(by_scope), request.stored_metric, request.window,
                                     request.timezone, request.parent)
        if not found:
            result.fits.append(f"no parent budget counts {request.stored_metric} per {request.window}: "
                               "limits not bounded (give --parent-limit to bound them)")
        groups = [(parents.Parent(key, b["limit"], f"budget {b['id']} ({key})"), children)
                  for b, grouped in found for key, children in grouped.items()]
    for parent, children in groups:
        wanted = {c: by_scope[c].limit for c in children}
        total = sum(wanted.values())
        if total <= parent.limit:
            result.fits.append(f"{parent.source}: limit {show(parent.limit, request.metric)}, "
                               f"children sum {show(total, request.metric)}: fits")
            continue
        if request.allow_overcommit:
            result.fits.append(f"{parent.source}: limit {show(parent.limit, request.metric)}, "
                               f"children sum {show(total, request.metric)}: overcommitted (--allow-overcommit)")
            continue
        fitted = parents.fit(wanted, parent.limit)
        for child, limit in fitted.items():
            by_scope[child].limit = limit
            by_scope[child].parent = parent.source
        result.fits.append(f"{parent.source}: limit {show(parent.limit, request.metric)}, children sum "
                           f"{show(total, request.metric)}: scaled by {parent.limit / total:.4f} "
                           f"(proportional, largest remainder) to sum {show(parent.limit, request.metric)}")
    for entry in result.entries:
        if entry.limit != entry.chosen.limit:
            entry.final = backtest(series[entry.evidence.scope], entry.limit, request.thresholds)


def show(stored: int | float, metric: str) -> str:
    """An amount in the budgets file's unit: exact USD for cost_usd, integers otherwise."""
    if metric != "cost_usd":
        return f"{round(stored):,}"
    text = f"{Decimal(round(stored)) / 10**6:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
