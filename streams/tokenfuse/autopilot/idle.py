"""What a shrink stands on, from the ClickHouse history: the budget scope's spend in its last
complete windows, and the recommendation (p95 x margin, the `budgets recommend` default) over
a longer lookback. The queries are the recommender's (history/window_spend.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tokenfuse.budgets.recommend import MIN_WINDOWS, Thresholds, evidence
from tokenfuse.history.reports import Runner
from tokenfuse.history.window_spend import complete_windows, spend_per_window, window_spec

LOOKBACK_WINDOWS = 30


@dataclass(frozen=True)
class Idle:
    spends: list[int]  # the last complete windows, oldest first
    window_start: int  # of the last one
    recommendation: int | None  # None: too little history to recommend


def idle_inputs(run: Runner, budget: Mapping[str, Any], now_ms: int) -> Idle:
    tz = budget.get("timezone") or "UTC"
    spec = window_spec(budget["window"], tz)
    start = end = spec.bounds(now_ms)[0]
    for _ in range(LOOKBACK_WINDOWS):
        start = spec.bounds(start - 1)[0]
    windows = complete_windows(budget["window"], tz, end - start, now_ms)
    series = spend_per_window(run, budget["scope"], budget["metric"], windows).get(budget["scope"], [])
    spends = [0] * (len(windows.starts) - len(series)) + series  # before the first usage: nothing spent
    recommendation = None
    if len(series) >= MIN_WINDOWS:
        recommendation = evidence(budget["scope"], series, int(windows.mean_ms), Thresholds()).option("p95").limit
    return Idle(spends, windows.starts[-1], recommendation)
