"""Hour-of-week spend profiles: the shape of a scope's spend over a week, from its history.

A calendar-month budget cannot be forecast from the last hours alone: agents run in office hours
and nights and weekends are quiet. With a profile, the burn rate is kept deseasonalised (each
delta divided by the profile's shape at its time) and projected through the profile's shape; its
level is blended with the history's own level while live evidence is short (HISTORY_TRUST_MS).
`tokenfuse.history.profiles` reads profiles from ClickHouse; this module is pure.

Hours of the week are counted in UTC from Monday 00:00 (the epoch was a Thursday).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

HOUR_MS = 3_600_000
WEEK_HOURS = 168
WEEK_MS = WEEK_HOURS * HOUR_MS
_EPOCH_OFFSET_H = 72  # 1970-01-01 00:00 UTC was Thursday: Monday 00:00 is 72 h earlier
SHAPE_FLOOR = 0.1  # a quiet hour still counts as a tenth of an average one: no division by ~0
HISTORY_TRUST_MS = 86_400_000  # live evidence of this long weighs as much as the history's level


def hour_of_week(t_ms: int) -> int:
    return (t_ms // HOUR_MS + _EPOCH_OFFSET_H) % WEEK_HOURS


@dataclass(frozen=True)
class HourOfWeekProfile:
    """Mean spend per hour of the week (168 values, metric units) over `weeks` weeks."""

    hourly: tuple[float, ...]
    weeks: int

    def __post_init__(self) -> None:
        if len(self.hourly) != WEEK_HOURS or any(v < 0 or not math.isfinite(v) for v in self.hourly):
            raise ValueError(f"a profile needs {WEEK_HOURS} finite non-negative hourly values")

    @property
    def mean_per_ms(self) -> float:
        return sum(self.hourly) / WEEK_MS

    @cached_property
    def shape(self) -> "Shape":
        """The profile relative to its mean, each hour floored at SHAPE_FLOOR (computed once)."""
        mean = sum(self.hourly) / WEEK_HOURS
        if mean <= 0:
            return Shape.flat()
        floor = SHAPE_FLOOR * mean
        return Shape(tuple((v + floor) / (mean + floor) for v in self.hourly))


@dataclass(frozen=True)
class Shape:
    """Relative rate per hour of the week (mean about 1), with its integral for O(1) sums."""

    factors: tuple[float, ...]

    @classmethod
    def flat(cls) -> "Shape":
        return cls((1.0,) * WEEK_HOURS)

    def __post_init__(self) -> None:
        cumulative = [0.0]
        for f in self.factors:
            cumulative.append(cumulative[-1] + f * HOUR_MS)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def at(self, t_ms: int) -> float:
        return self.factors[hour_of_week(t_ms)]

    def integral(self, start_ms: float, end_ms: float) -> float:
        """The integral of the shape over [start, end] in ms: a rate of 1 per ms shaped."""
        return self._antiderivative(end_ms) - self._antiderivative(start_ms)

    def _antiderivative(self, t_ms: float) -> float:
        shifted = t_ms + _EPOCH_OFFSET_H * HOUR_MS
        weeks, into = divmod(shifted, WEEK_MS)
        hour = int(into // HOUR_MS)
        cumulative: Sequence[float] = self._cumulative  # type: ignore[attr-defined]
        return weeks * cumulative[-1] + cumulative[hour] + self.factors[hour] * (into - hour * HOUR_MS)
