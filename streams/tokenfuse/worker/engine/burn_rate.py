"""Burn rate of one scope against one budget, updated with every delta, and its projection.

Why double exponential smoothing (two EWMAs of the spend rate), not one EWMA:
- One EWMA of the rate with half-life `hl` lags a ramp by its mean age (hl / ln 2): on an
  accelerating agent the ETA it gives is late by exactly the time that matters. Two EWMAs with
  half-lives hl and 4*hl lag by different amounts; their difference measures the trend (the
  rate's slope) and removes the lag (Brown's double smoothing, written for irregular times).
- Holt's recursive form needs evenly spaced observations; deltas arrive at irregular seconds and
  sometimes out of order. Exponentially decayed sums (`M = sum a * exp(-l * age)`) take each
  delta exactly where it belongs in time, in O(1), and a late delta is added with its own decay.
- A trend is noisy on bursty traffic, and a quadratic extrapolation of noise gives false alarms.
  The trend is shrunk by its own significance (g * g^2 / (g^2 + var g)): a clear ramp keeps it, a
  burst does not.
- Sums start at the window start of the first delta and are divided by the weight actually
  observed (bias correction), so the first estimate is the window's average rate (what LiteLLM
  projects) and it sharpens as evidence comes in.

The noise variance comes from residuals over blocks of an eighth of the half-life (spend minus
rate times length), so a burst of calls spread over seconds counts as the one random event it is. The band (p10/p50/p90) is a
normal approximation of future spend: compound-Poisson noise grows with h, level error with h^2,
trend error with h^4, plus a relative model error (MODEL_ERROR) for what no estimator sees coming
(steps, seasonality).

All times are epoch ms, rates per ms, in the budget's metric (tokens or micro-USD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tokenfuse.usage.windows import WindowSpec

LN2 = math.log(2)
SLOW_RATIO = 4.0  # the slow EWMA's half-life, in fast half-lives
HALF_LIFE_SHARE = 12
MAX_NOISE_SCALE = 4.0
SHRINK = 0.5  # shrinkage g^2 / (g^2 + SHRINK var g): a slope of 1 sd keeps 2/3 of itself  # the fast half-life is the window divided by this
MIN_HALF_LIFE_MS = 5_000
MIN_BLOCK_MS = 2_000
MAX_HALF_LIFE_MS = 12 * 3_600_000
MODEL_ERROR = 0.18  # relative error of the level, added to the statistical one (tuned on bench_forecast)
Z90 = 1.2815515655446004  # the standard normal's 90th percentile


def window_size_ms(spec: WindowSpec) -> int:
    return spec.horizon_ms


def half_life_ms(spec: WindowSpec) -> int:
    """The fast EWMA's half-life: a twelfth of the window (5 min for 1h, 2h for a day),
    within [5 s, 12 h]. Long enough to average bursts, short enough to follow a change well
    before the window ends."""
    return int(min(MAX_HALF_LIFE_MS, max(MIN_HALF_LIFE_MS, window_size_ms(spec) // HALF_LIFE_SHARE)))


@dataclass
class BurnRate:
    """Decayed sums of spend since `origin_ms`, as of `last_ms`. JSON form: a flat list."""

    half_life_ms: int
    origin_ms: int
    last_ms: int
    fast: float = 0.0  # sum of a * exp(-lf * (last - t))
    slow: float = 0.0  # sum of a * exp(-ls * (last - t))
    noise: float = 0.0  # sum of block residual^2 * exp(-ls * (last - t))
    events: int = 0
    block_start: int = -1  # the open noise block and its spend
    block_sum: float = 0.0

    @classmethod
    def start(cls, spec: WindowSpec, origin_ms: int, spent: float = 0.0, now_ms: int | None = None) -> "BurnRate":
        """A new estimator watching since `origin_ms`; `spent` already made by `now_ms` is spread
        evenly over that span (a budget created mid-window, a restart without state)."""
        now = origin_ms if now_ms is None else max(origin_ms, now_ms)
        rate = BurnRate(half_life_ms(spec), origin_ms, now)
        if spent > 0 and now > origin_ms:
            rate.fast = spent / (now - origin_ms) * rate._weight(rate._lf, now)
            rate.slow = spent / (now - origin_ms) * rate._weight(rate._ls, now)
        return rate

    @property
    def _lf(self) -> float:
        return LN2 / self.half_life_ms

    @property
    def _ls(self) -> float:
        return LN2 / (self.half_life_ms * SLOW_RATIO)

    def _weight(self, lam: float, now: int) -> float:
        """Integral of exp(-lam * age) over the observed span: what the sum of a steady rate of 1
        per ms would be."""
        span = max(now - self.origin_ms, 1)
        return -math.expm1(-lam * span) / lam

    def observe(self, t_ms: int, amount: float, events: int = 1) -> None:
        """Add `amount` spent at `t_ms` (a delta; `amount` already deseasonalised if a profile
        is used). In event-time order it costs two exponentials (the noise sum decays like the
        slow one); a late delta two more."""
        block = self.block_ms
        start = t_ms - t_ms % block
        if start > self.block_start:
            self._close_block(start)
            self.block_start, self.block_sum = start, amount
        elif start == self.block_start:
            self.block_sum += amount
        ls = LN2 / (self.half_life_ms * SLOW_RATIO)
        if t_ms >= self.last_ms:
            if t_ms > self.last_ms:
                slow_decay = math.exp(-ls * (t_ms - self.last_ms))
                self.fast *= math.exp(-ls * SLOW_RATIO * (t_ms - self.last_ms))
                self.slow *= slow_decay
                self.noise *= slow_decay
                self.last_ms = t_ms
            self.fast += amount
            self.slow += amount
        else:
            age = self.last_ms - t_ms
            self.fast += amount * math.exp(-ls * SLOW_RATIO * age)
            self.slow += amount * math.exp(-ls * age)
        self.events += events

    @property
    def block_ms(self) -> int:
        """Noise is measured on blocks of spend this long, not per delta: bursts spread over
        seconds (a tool-calling agent's cluster of calls) are one random event, not many."""
        return max(MIN_BLOCK_MS, self.half_life_ms // 8)

    def _close_block(self, next_start: int) -> None:
        """The closed block's residual (its spend minus the rate times its length) and those of
        the empty blocks up to `next_start` enter the noise sum, decayed to the block's end."""
        if self.block_start < 0:
            return
        block, end = self.block_ms, self.block_start + self.block_ms
        expected = self.level_at(end) * block
        empty = (next_start - end) // block
        age = max(self.last_ms - end, 0)
        self.noise += ((self.block_sum - expected) ** 2 + empty * expected * expected) * math.exp(-self._ls * age)

    def level_at(self, now: int) -> float:
        """The fast EWMA rate at `now` (no trend correction): the residuals' reference."""
        now = max(now, self.last_ms)
        return self.fast * math.exp(-self._lf * (now - self.last_ms)) / self._weight(self._lf, now)

    def trend(self, now: int) -> "Trend":
        """Level, slope and their uncertainties at `now` (>= last_ms; decays the sums to it)."""
        now = max(now, self.last_ms)
        lf, ls = self._lf, self._ls
        wf, ws = self._weight(lf, now), self._weight(ls, now)
        r1 = self.fast * math.exp(-lf * (now - self.last_ms)) / wf
        r2 = self.slow * math.exp(-ls * (now - self.last_ms)) / ws
        noise = self.noise * math.exp(-ls * (now - self.last_ms)) / ws  # variance per ms
        span = max(now - self.origin_ms, 1)
        a1, a2 = _mean_age(lf, span), _mean_age(ls, span)
        # Variances of the two EWMAs and their covariance, for noise of `noise` per ms.
        v11 = noise * -math.expm1(-2 * lf * span) / (2 * lf) / (wf * wf)
        v22 = noise * -math.expm1(-2 * ls * span) / (2 * ls) / (ws * ws)
        v12 = noise * -math.expm1(-(lf + ls) * span) / (lf + ls) / (wf * ws)
        lag = a2 - a1
        if lag <= 1e-9 * span:
            return Trend(r1, 0.0, noise, v11, 0.0)
        slope = (r1 - r2) / lag
        var_slope = max(v11 + v22 - 2 * v12, 0.0) / (lag * lag)
        shrink = slope * slope / (slope * slope + SHRINK * var_slope) if slope else 0.0
        # From the slow EWMA, lag-corrected: without a clear trend, the steadier of the two.
        level = max(r2 + shrink * slope * a2, 0.0)
        # Spend noise grows with the rate (compound Poisson: variance ~ rate). The residuals were
        # measured at about the slow rate; scaled to the level now, a stream that went quiet
        # gets a narrow band instead of the width of its busy past.
        scale = min(level / r2, MAX_NOISE_SCALE) if r2 > 0 else 1.0
        return Trend(level, shrink * slope, noise * scale, (v22 + (shrink * a2) ** 2 * var_slope) * min(scale, 1.0),
                     shrink * var_slope * min(scale, 1.0))

    def to_json(self) -> list[Any]:
        return [self.half_life_ms, self.origin_ms, self.last_ms, self.fast, self.slow, self.noise, self.events,
                self.block_start, self.block_sum]

    @classmethod
    def from_json(cls, data: list[Any]) -> "BurnRate":
        return cls(*data)


def _mean_age(lam: float, span: float) -> float:
    """Mean age of exponential weights exp(-lam * age) over ages [0, span]."""
    x = lam * span
    if x < 1e-6:
        return span / 2
    return 1 / lam - span / math.expm1(x)


@dataclass(frozen=True)
class Trend:
    """Rate now (`level`, per ms), its slope (per ms^2), the noise variance per ms, and the
    variances of level and slope."""

    level: float
    slope: float
    noise: float
    var_level: float
    var_slope: float

    def mean(self, h: float) -> float:
        """Expected spend over the next h ms; the rate never goes below zero."""
        if self.slope >= 0 or self.level <= 0:
            return max(self.level * h + self.slope * h * h / 2, 0.0)
        stop = min(h, self.level / -self.slope)  # a falling rate reaches zero and stays there
        return self.level * stop + self.slope * stop * stop / 2

    def sd(self, h: float) -> float:
        model = MODEL_ERROR * (self.level * h + abs(self.slope) * h * h / 2)
        return math.sqrt(self.noise * h + self.var_level * h * h + self.var_slope * h ** 4 / 4 + model * model)
