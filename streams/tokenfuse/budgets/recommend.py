"""Budget recommendations from a scope's spend per window: percentiles, margin, trend, backtest.

Pure arithmetic on integer amounts (micro-USD or tokens), one value per complete window, oldest
first; the queries that produce them are in tokenfuse.history.window_spend. The formulas (also in
docs/planning.md):

- percentile p of n values: linear interpolation between the closest ranks (h = (n-1)p, the
  "type 7" estimator of R and numpy's default);
- margin, after the Kubernetes VPA recommender: (1 + safety) x (1 + 1/confidence), where safety
  is 0.15 (VPA's safety margin) and confidence = min(windows, days of history) (VPA's confidence
  is days of history; with fewer windows than days the sample count is what is uncertain). The
  margin is 1.31 at 7 daily windows, 1.19 at 30, and tends to 1.15;
- limit = ceil(percentile x margin), at least 1;
- trend: the least-squares slope of the amounts over window index, in % of their mean per week;
- backtest of a limit L over the history: a window warned when spend x 100 >= warn% x L (and
  not blocked), blocked when spend x 100 >= block% x L (the worker's own test), and budget left
  unused = sum of max(L - spend, 0), also as % of L x windows.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

WEEK_MS = 7 * 86_400_000
DAY_MS = 86_400_000
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
SAFETY_MARGIN = 0.15
MIN_WINDOWS = 7


@dataclass(frozen=True)
class Thresholds:
    """The thresholds written into recommended budgets and used by the backtest."""

    warn_percent: int = 80
    block_percent: int = 100

    def as_budget(self) -> list[dict[str, object]]:
        return [{"percent": self.warn_percent, "action": "warn"}, {"percent": self.block_percent, "action": "block"}]


@dataclass(frozen=True)
class Backtest:
    windows: int
    warned: int  # reached the warn threshold, not the block one
    blocked: int
    unused: int  # budget left unused, summed over the windows
    unused_percent: float


@dataclass(frozen=True)
class Option:
    name: str  # p50 | p90 | p95 | p99
    percentile: float  # the window spend at that percentile
    limit: int  # percentile x margin, rounded up
    backtest: Backtest


@dataclass(frozen=True)
class Evidence:
    """What a recommendation for one scope stands on."""

    scope: str
    windows: int  # complete windows from the scope's first usage in the lookback to now
    history_days: float
    mean: float
    trend_percent_per_week: float
    margin: float
    options: tuple[Option, ...]

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)


class Spend:
    """One scope's amounts per window, sorted once with prefix sums, so each percentile and each
    backtest is a binary search instead of a pass over the windows."""

    def __init__(self, values: list[int]):
        if not values:
            raise ValueError("no windows of spend")
        self.ordered = sorted(values)
        self.prefix = [0]
        for v in self.ordered:
            self.prefix.append(self.prefix[-1] + v)

    def percentile(self, p: float) -> float:
        """Linear interpolation between closest ranks (type 7)."""
        ordered = self.ordered
        h = (len(ordered) - 1) * p
        low = math.floor(h)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (h - low) * (ordered[high] - ordered[low])

    def reaching(self, limit: int, percent: int) -> int:
        """How many windows have spend x 100 >= percent x limit."""
        return len(self.ordered) - bisect_left(self.ordered, -(-percent * limit // 100))

    def backtest(self, limit: int, thresholds: "Thresholds") -> "Backtest":
        if limit <= 0:
            raise ValueError("a limit must be positive")
        n = len(self.ordered)
        blocked = self.reaching(limit, thresholds.block_percent)
        below = bisect_left(self.ordered, limit)
        unused = limit * below - self.prefix[below]
        return Backtest(windows=n, warned=self.reaching(limit, thresholds.warn_percent) - blocked, blocked=blocked,
                        unused=unused, unused_percent=round(100 * unused / (limit * n), 1))


def percentile(values: list[int], p: float) -> float:
    return Spend(values).percentile(p)


def margin(windows: int, history_days: float, safety: float = SAFETY_MARGIN) -> float:
    """(1 + safety) x (1 + 1/confidence), confidence = min(windows, days of history)."""
    confidence = min(float(windows), history_days)
    if confidence <= 0:
        raise ValueError("margin needs at least one window of history")
    return (1 + safety) * (1 + 1 / confidence)


def limit_for(value: float, factor: float) -> int:
    """A budget limit: value x factor rounded up, at least 1 (budgets need a positive limit).
    Rounded to 9 digits first so float noise never adds a unit (2.0 x 1.5 stays 3)."""
    return max(1, math.ceil(round(value * factor, 9)))


def trend_percent_per_week(values: list[int], window_ms: int) -> float:
    """Least-squares slope over window index, as % of the mean per week (0 when flat or empty)."""
    n = len(values)
    mean = sum(values) / n if n else 0.0
    if n < 2 or mean == 0:
        return 0.0
    x_mean = (n - 1) / 2
    covariance = sum((i - x_mean) * (v - mean) for i, v in enumerate(values))
    variance = sum((i - x_mean) ** 2 for i in range(n))
    return covariance / variance * (WEEK_MS / window_ms) / mean * 100


def backtest(values: list[int], limit: int, thresholds: Thresholds) -> Backtest:
    """How a limit would have done over these windows (exact integer comparisons)."""
    return Spend(values).backtest(limit, thresholds)


def evidence(scope: str, values: list[int], window_ms: int, thresholds: Thresholds,
             safety: float = SAFETY_MARGIN) -> Evidence:
    """Every option with its backtest for one scope's complete windows (oldest first)."""
    days = len(values) * window_ms / DAY_MS
    factor = margin(len(values), days, safety)
    spend = Spend(values)
    options = []
    for name, p in PERCENTILES.items():
        value = spend.percentile(p)
        limit = limit_for(value, factor)
        options.append(Option(name, value, limit, spend.backtest(limit, thresholds)))
    return Evidence(scope=scope, windows=len(values), history_days=days, mean=sum(values) / len(values),
                    trend_percent_per_week=trend_percent_per_week(values, window_ms), margin=factor,
                    options=tuple(options))
