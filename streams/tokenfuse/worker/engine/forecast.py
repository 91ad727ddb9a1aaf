"""Breach forecasts and early warnings, per budget, scope and window (pure; no Faust, no Kafka).

- `ForecastState` lives in the scope record (a changelog value): a BurnRate (burn_rate.py) and
  the early-warning state, both as compact JSON lists.
- `forecast()` gives the burn rate, the spend projected at the window's end and the ETA of the
  limit with a band: p10 (the earliest plausible breach), p50, p90, each None when the limit is
  not reached before the window ends ("not in this window").
- `step_warning()` turns forecasts into at most one transition: `forecast` (fire) or
  `forecast_cleared`.

When a warning fires (documented in docs/forecasts.md): the breach must be more likely than not
within this window (the p50 ETA is before the window's end) AND plausible within `warn_before`
(a conservative band edge, the 2.3rd percentile ETA, is less than `warn_before` away). Waiting
for the p50 alone to come within `warn_before` would give half of the accurate warnings less lead
than asked for.
It clears, with hysteresis, when the p50 ETA has left the window and the p10 ETA is more than
twice `warn_before` away, continuously for `warn_before / 4` (at least 5 s) of event time.
A cleared warning may fire again in the same window (a new episode, a new alert id).
Rolling windows have no end to forecast against: they get no forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from tokenfuse.usage.windows import WindowSpec
from tokenfuse.worker.engine.burn_rate import MODEL_ERROR, Z90, BurnRate, Trend, window_size_ms
from tokenfuse.worker.engine.seasonal import HISTORY_TRUST_MS, HourOfWeekProfile, Shape

FORECAST_ACTIONS = ("alert", "warn", "throttle")
HOUR_MS = 3_600_000
SECOND_MS = 1_000  # a delta's span of event time
GRID = 32  # ETA search: scan points over the window's rest, then bisection
BISECT = 24
MIN_EVENTS = 5  # deltas seen before a warning may fire
MIN_SPAN_FRACTION = 0.05  # ... and this share of the window observed
MIN_CLEAR_DWELL_MS = 5_000
# The band edge a warning fires on: the 2.3rd percentile ETA (z = 2), not the p10: with p10 a
# tenth of the breaches come sooner than it said and so with less lead than `warn_before`
# (bench_forecast: in time 86% -> 98% on linear runs, no false warnings either way).
WARN_Z = 2.0
# Cheap gate: spend needing more than this many times the current rate over the rest of the
# window cannot be forecast within it (even a steep ramp's projection stays under ~3x).
FAR_FACTOR = 8


class Projection(Protocol):
    def mean(self, h: float) -> float: ...

    def sd(self, h: float) -> float: ...


@dataclass(frozen=True)
class ForecastRule:
    """A budget's `forecast:` setting."""

    warn_before_ms: int
    action: str

    @classmethod
    def of(cls, budget: Mapping[str, Any]) -> "ForecastRule | None":
        rule = budget.get("forecast")
        return cls(rule["warn_before_ms"], rule["action"]) if rule else None


@dataclass(frozen=True)
class SeasonalTrend:
    """A deseasonalised level projected through an hour-of-week shape from `now`."""

    level: float
    noise: float
    var_level: float
    shape: Shape
    now: int

    def mean(self, h: float) -> float:
        return self.level * self.shape.integral(self.now, self.now + h)

    def sd(self, h: float) -> float:
        shaped = self.shape.integral(self.now, self.now + h)
        return math.sqrt(self.noise * shaped + (self.var_level + (MODEL_ERROR * self.level) ** 2) * shaped ** 2)


def projection(rate: BurnRate, now: int, profile: HourOfWeekProfile | None = None) -> Projection:
    """Future spend from `now`: the live trend, or with a profile the live level (fed
    deseasonalised deltas, see `deseasonalised`) blended with the history's level."""
    trend = rate.trend(now)
    if profile is None:
        return trend
    live = max(now - rate.origin_ms, 0) / (max(now - rate.origin_ms, 0) + HISTORY_TRUST_MS)
    history = profile.mean_per_ms
    history_error = history / math.sqrt(4 * max(profile.weeks, 1))  # weeks differ by ~50%
    return SeasonalTrend(live * trend.level + (1 - live) * history, trend.noise,
                         live ** 2 * trend.var_level + (1 - live) ** 2 * history_error ** 2, profile.shape, now)


def deseasonalised(amount: float, t_ms: int, profile: HourOfWeekProfile | None) -> float:
    """What to feed the burn rate: the delta divided by the profile's shape at its time."""
    return amount if profile is None else amount / profile.shape.at(t_ms)


def observed_at(second_ms: int) -> int:
    """When the burn rate takes a delta: the middle of its second, the centroid of spend spread
    over [s, s + 1 s). At its start, every delta ran half a second early, which on the shortest
    windows (half-life 5 s) steepened ramps: the 1-minute ramp's ETA came 20-30% early."""
    return second_ms + SECOND_MS // 2


def eta(proj: Projection, need: float, now: int, end: int, z: float = 0.0) -> int | None:
    """First time the spend quantile `mean + z * sd` has grown by `need`, if before `end`."""
    if need <= 0:
        return now
    horizon = end - now
    if horizon <= 0:
        return None

    def short(h: float) -> bool:
        return proj.mean(h) + z * proj.sd(h) < need

    low = 0.0
    for i in range(1, GRID + 1):
        high = horizon * i / GRID
        if not short(high):
            for _ in range(BISECT):
                mid = (low + high) / 2
                low, high = (mid, high) if short(mid) else (low, mid)
            return now + math.ceil(high)
        low = high
    return None


@dataclass(frozen=True)
class Forecast:
    """A budget's forecast for one scope and window, as `GET /totals` and alerts show it."""

    now: int
    window_start: int
    window_end: int
    spent: int
    limit: int
    rate_per_hour: float
    projected: int  # p50 spend at the window's end
    eta_p10: int | None
    eta_p50: int | None
    eta_p90: int | None

    def to_json(self) -> dict[str, Any]:
        return {"burn_rate_per_hour": round(self.rate_per_hour, 3), "projected": self.projected,
                "eta_p10": self.eta_p10, "eta_p50": self.eta_p50, "eta_p90": self.eta_p90}


def forecast(rate: BurnRate, spent: int, limit: int, window_start: int, window_end: int, now: int,
             profile: HourOfWeekProfile | None = None) -> Forecast:
    proj = projection(rate, now, profile)
    need = limit - spent
    rest = max(window_end - now, 0)
    level = proj.mean(HOUR_MS) if profile is not None else rate.trend(now).level * HOUR_MS
    return Forecast(now, window_start, window_end, spent, limit, level, int(spent + proj.mean(rest)),
                    eta(proj, need, now, window_end, Z90), eta(proj, need, now, window_end),
                    eta(proj, need, now, window_end, -Z90))


@dataclass
class EarlyWarning:
    """The early warning of one window: whether it is up, how many times it fired, and since
    when (event time) the clear condition has held."""

    window_start: int = -1
    active: bool = False
    episodes: int = 0
    clear_since: int | None = None

    def to_json(self) -> list[Any]:
        return [self.window_start, self.active, self.episodes, self.clear_since]


@dataclass
class ForecastState:
    """What a scope record keeps per forecasting budget."""

    rate: BurnRate
    warning: EarlyWarning = field(default_factory=EarlyWarning)

    @classmethod
    def start(cls, spec: WindowSpec, window_start: int, spent: int = 0, now: int | None = None) -> "ForecastState":
        return cls(BurnRate.start(spec, window_start, spent, now))

    def to_json(self) -> list[Any]:
        return [self.rate.to_json(), self.warning.to_json()]

    @classmethod
    def from_json(cls, data: list[Any]) -> "ForecastState":
        return cls(BurnRate.from_json(data[0]), EarlyWarning(*data[1]))


def ready(rate: BurnRate, spec: WindowSpec, now: int) -> bool:
    """Enough evidence for a warning: a few deltas over a twentieth of the window."""
    return rate.events >= MIN_EVENTS and now - rate.origin_ms >= MIN_SPAN_FRACTION * window_size_ms(spec)


def step_warning(state: ForecastState, rule: ForecastRule, spec: WindowSpec, spent: int, limit: int,
                 window_start: int, window_end: int, now: int,
                 profile: HourOfWeekProfile | None = None) -> str | None:
    """Advance the warning of this window; "forecast", "forecast_cleared" or None. Costs two or
    three evaluations of the projection, not an ETA search."""
    w = state.warning
    if w.window_start != window_start:  # a new window: nothing is up in it yet
        state.warning = w = EarlyWarning(window_start)
    need = limit - spent
    if need <= 0:
        return None  # breached: the thresholds take over; a warning up stays up
    rest = window_end - now
    if not w.active and profile is None and need > FAR_FACTOR * state.rate.level_at(now) * rest:
        return None  # far from any breach in this window: skip the projection (the common case)
    proj = projection(state.rate, now, profile)
    likely = rest > 0 and proj.mean(rest) >= need
    if not w.active:
        soon = min(rule.warn_before_ms, rest)
        plausible = proj.mean(soon) + WARN_Z * proj.sd(soon) >= need
        if likely and plausible and ready(state.rate, spec, now):
            w.active, w.episodes, w.clear_since = True, w.episodes + 1, None
            return "forecast"
        return None
    far = min(2 * rule.warn_before_ms, rest)
    receded = not likely and (rest <= 0 or proj.mean(far) + Z90 * proj.sd(far) < need)
    if not receded:
        w.clear_since = None
        return None
    if w.clear_since is None:
        w.clear_since = now
    if now - w.clear_since >= max(MIN_CLEAR_DWELL_MS, rule.warn_before_ms // 4):
        w.active, w.clear_since = False, None
        return "forecast_cleared"
    return None


def forecast_alert(kind: str, budget: Mapping[str, Any], scope: str, rule: ForecastRule, fc: Forecast,
                   episode: int, event_id: str) -> dict[str, Any]:
    """The Alert record (kind forecast or forecast_cleared). Deterministic id: a replay after a
    crash produces the same id, so history stores it once."""
    b = budget
    when = "not in this window" if fc.eta_p50 is None else f"ETA {_clock(fc.eta_p50)} UTC (p10 " \
        f"{_clock(fc.eta_p10)}, p90 {_clock(fc.eta_p90)})"
    text = (f"{scope} is forecast to reach budget {b['id']} ({b['limit']} {b['metric']}, window {b['window']}): {when}"
            if kind == "forecast" else f"{scope}: forecast for budget {b['id']} cleared, projected "
            f"{fc.projected} of {b['limit']} {b['metric']} by the window's end")
    return {
        "alert_id": f"{b['id']}|{scope}|{fc.window_start}|{kind}|{episode}", "kind": kind, "scope": scope,
        "budget_id": b["id"], "action": rule.action if kind == "forecast" else "alert", "metric": b["metric"],
        "spent": fc.spent, "limit": b["limit"], "window_start": fc.window_start, "window_end": fc.window_end,
        "event_id": event_id or None, "created_at": fc.now, "message": text,
        "eta_p10": fc.eta_p10, "eta_p50": fc.eta_p50, "eta_p90": fc.eta_p90,
        "burn_rate_per_hour": fc.rate_per_hour, "projected": fc.projected,
    }


def _clock(t_ms: int | None) -> str:
    if t_ms is None:
        return "-"
    seconds = t_ms // 1000 % 86_400
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}"
