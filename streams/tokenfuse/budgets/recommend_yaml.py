"""The budgets file `tokenfuse budgets recommend --out FILE` writes: valid for `budgets apply`
as is, with the evidence behind every recommended limit as YAML comments.

`budgets apply` deletes the budgets a file leaves out, so the file also holds every budget in
force that is not replaced (under "kept as they are"): applying it changes only the
recommended ones. Strings are written as JSON strings, which YAML reads verbatim.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from tokenfuse.budgets.recommend import Backtest
from tokenfuse.budgets.recommender import Entry, Result, show


def render(result: Result, command: str, now_ms: int) -> str:
    request = result.request
    lines = [f"# {command}",
             f"# generated {_day(now_ms, True)} from ClickHouse history {_day(result.first_window_ms)} .. "
             f"{_day(result.end_ms)} ({result.windows} complete {request.window} windows)",
             f"# written: {request.option} of each scope's spend per window x margin; thresholds "
             f"warn {request.thresholds.warn_percent}%, block {request.thresholds.block_percent}%",
             f"# margin = (1 + {request.safety:g}) x (1 + 1/confidence), confidence = min(windows, days of history)"]
    lines += [f"# parent: {line}" for line in result.fits]
    lines += [f"# not recommended, too little history: {scope} ({n} windows < {request.min_windows})"
              for scope, n in sorted(result.too_short.items())]
    lines.append("budgets:" if result.kept or result.entries else "budgets: []")
    if result.kept:
        lines.append("  # kept as they are: budgets in force that this file does not replace "
                     "(budgets apply deletes what a file leaves out)")
        lines += [line for budget in result.kept for line in _item(budget)]
    for entry in result.entries:
        lines += [f"  # {line}" for line in evidence_lines(entry, request.metric)]
        lines += _item(budget_of(entry, result))
    return "\n".join(lines) + "\n"


def budget_of(entry: Entry, result: Result) -> dict[str, Any]:
    request = result.request
    chosen = entry.chosen
    why = f"recommended: {chosen.name} x {entry.evidence.margin:.3f} over {entry.evidence.windows} windows"
    if entry.parent:
        why += f", scaled to fit {entry.parent}"
    return {"id": request.budget_id(entry.evidence.scope), "scope": entry.evidence.scope, "metric": request.metric,
            "limit": entry.limit, "window": request.window, "timezone": request.timezone,
            "thresholds": request.thresholds.as_budget(), "description": why}


def evidence_lines(entry: Entry, metric: str) -> list[str]:
    e = entry.evidence
    lines = [f"{e.scope}: {e.windows} windows ({e.history_days:g} days), mean {show(e.mean, metric)}, "
             f"trend {e.trend_percent_per_week:+.1f}%/week"]
    for option in e.options:
        mark = " <- written" if option is entry.chosen else ""
        lines.append(f"  {option.name} {show(option.percentile, metric)} -> limit {show(option.limit, metric)}: "
                     f"{backtest_text(option.backtest)}{mark}")
    if entry.limit != entry.chosen.limit:
        lines.append(f"  scaled to {show(entry.limit, metric)} ({entry.parent}): {backtest_text(entry.final)}")
    if entry.current is not None:
        lines.append(f"  replaces the budget in force with limit {show(entry.current['limit'], metric)}")
    return lines


def backtest_text(b: Backtest) -> str:
    return f"blocked {b.blocked}/{b.windows}, warned {b.warned}/{b.windows}, unused {b.unused_percent:g}%"


def _item(budget: dict[str, Any]) -> list[str]:
    limit = budget["limit"]
    if budget["metric"] == "cost_usd":
        limit = show(limit, "cost_usd")
    thresholds = ", ".join(f"{{percent: {t['percent']}, action: {t['action']}}}" for t in budget["thresholds"])
    out = [f"  - id: {json.dumps(budget['id'])}",
           f"    scope: {json.dumps(budget['scope'])}",
           f"    metric: {budget['metric']}",
           f"    limit: {limit}",
           f"    window: {json.dumps(budget['window'])}",
           f"    timezone: {json.dumps(budget['timezone'])}",
           f"    thresholds: [{thresholds}]"]
    if budget.get("description"):
        out.append(f"    description: {json.dumps(budget['description'])}")
    return out


def _day(ms: int, with_time: bool = False) -> str:
    when = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ" if with_time else "%Y-%m-%d %H:%M")
