"""Synthetic spend for bench_forecast: seeded runs of usage events (time, cost) in event time.

Every shape is an intensity g(u) over the window (u = elapsed / window, 0..1) of a Poisson
stream of calls with log-normal costs; bursty runs arrive in clusters. Runs meant to breach are
scaled so that the expected spend reaches the limit at a drawn time; the others end the window at
a drawn fraction of the limit. The true breach time is read from the generated events.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from tokenfuse.worker.engine.seasonal import HOUR_MS, WEEK_HOURS, HourOfWeekProfile, hour_of_week

DAY_MS = 86_400_000
LIMIT = 10_000_000  # $10 in micro-USD
SIGMA = 1.0  # log-normal cost spread: a call may cost 10x another


@dataclass(frozen=True)
class Run:
    shape: str
    seed: int
    window_ms: int
    events: list[tuple[int, int]]  # (event time ms from the window start, cost)
    breach_ms: int | None  # first time the window's spend reaches LIMIT
    profile: HourOfWeekProfile | None = None


def _integral(g: Callable[[float], float], u: float, steps: int = 400) -> float:
    return sum(g(u * (i + 0.5) / steps) for i in range(steps)) * u / steps


def _calls(rng: random.Random, g: Callable[[float], float], g_max: float, calls: float, window: int,
           cluster: float) -> list[int]:
    """Call times: a Poisson stream of intensity ~ g (thinning), in clusters of mean size `cluster`
    spread over ~20 s when cluster > 1."""
    rate = calls / cluster / _integral(g, 1.0) * g_max / window  # candidate clusters per ms
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= window:
            return sorted(out)
        if rng.random() * g_max < g(t / window):
            size = 1 if cluster <= 1 else 1 + int(rng.expovariate(1 / (cluster - 1)))
            out += [min(window - 1, int(t + rng.uniform(0, 20_000))) for _ in range(size)]


def _run(shape: str, seed: int, rng: random.Random, g: Callable[[float], float], g_max: float, *,
         breach_at: float | None, fraction: float = 0.0, window: int = DAY_MS, calls: float = 3000,
         cluster: float = 1.0, weekly: Callable[[int], float] | None = None) -> Run:
    """`weekly`: the intensity per hour of the week, for a history profile of four earlier weeks
    (the same shape and scale, 20% noise per hour)."""
    times = _calls(rng, g, g_max, calls, window, cluster)
    share = _integral(g, breach_at) / _integral(g, 1.0) if breach_at else 1.0
    mean_cost = (LIMIT if breach_at else fraction * LIMIT) / (calls * share)
    profile = None
    if weekly is not None:
        per_hour = calls * mean_cost / (_integral(g, 1.0) * window) * HOUR_MS  # spend per hour at intensity 1
        profile = HourOfWeekProfile(tuple(weekly(h) * per_hour * rng.lognormvariate(0, 0.2)
                                          for h in range(WEEK_HOURS)), 4)
    mu = math.log(mean_cost) - SIGMA ** 2 / 2
    events = [(t, max(1, int(rng.lognormvariate(mu, SIGMA)))) for t in times]
    spent, breach = 0, None
    for t, cost in events:
        spent += cost
        if spent >= LIMIT:
            breach = t
            break
    return Run(shape, seed, window, events, breach, profile)


def steady(seed: int) -> Run:
    rng = random.Random(seed)
    return _run("steady below budget", seed, rng, lambda u: 1.0, 1.0, breach_at=None, fraction=rng.uniform(0.6, 0.95))


def linear(seed: int) -> Run:
    rng = random.Random(seed)
    return _run("linear to a breach", seed, rng, lambda u: 1.0, 1.0, breach_at=rng.uniform(0.4, 0.95))


def ramp(seed: int) -> Run:
    rng = random.Random(seed)
    k = rng.uniform(3, 8)
    return _run("accelerating ramp", seed, rng, lambda u: 1 + k * u, 1 + k, breach_at=rng.uniform(0.5, 0.95))


def bursty(seed: int) -> Run:
    """Compound Poisson: clusters of ~15 calls; half the runs breach."""
    rng = random.Random(seed)
    if rng.random() < 0.5:
        return _run("bursty (compound Poisson)", seed, rng, lambda u: 1.0, 1.0, breach_at=rng.uniform(0.4, 0.95),
                    cluster=15)
    return _run("bursty (compound Poisson)", seed, rng, lambda u: 1.0, 1.0, breach_at=None,
                fraction=rng.uniform(0.5, 0.85), cluster=15)


def step(seed: int) -> Run:
    rng = random.Random(seed)
    at, factor = rng.uniform(0.2, 0.5), rng.uniform(2.5, 5)
    return _run("step change", seed, rng, lambda u: factor if u >= at else 1.0, factor,
                breach_at=rng.uniform(at + 0.1, 0.95))


def level_off(seed: int) -> Run:
    """A fast start that levels off: never breaches (a warning, if any, must clear)."""
    rng = random.Random(seed)
    until = rng.uniform(0.15, 0.35)
    return _run("levels off", seed, rng, lambda u: 6.0 if u < until else 0.6, 6.0, breach_at=None,
                fraction=rng.uniform(0.6, 0.85))


def seasonal(seed: int) -> Run:
    """A calendar month of office-hours spend (weekdays 9-18 UTC busy, weekends quiet), with a
    history profile of four earlier weeks."""
    rng = random.Random(seed)
    month = 30 * DAY_MS

    def weekly(hour: int) -> float:
        day, h = divmod(hour, 24)
        return 0.05 if day >= 5 else 1.0 if 9 <= h < 18 else 0.15

    start_hour = hour_of_week(0)

    def g(u: float) -> float:
        return weekly((start_hour + int(u * month / HOUR_MS)) % WEEK_HOURS)

    if rng.random() < 0.5:
        return _run("daily-seasonal (month)", seed, rng, g, 1.0, breach_at=rng.uniform(0.4, 0.95), window=month,
                    calls=12000, weekly=weekly)
    return _run("daily-seasonal (month)", seed, rng, g, 1.0, breach_at=None, fraction=rng.uniform(0.5, 0.85),
                window=month, calls=12000, weekly=weekly)


SHAPES = (steady, linear, ramp, bursty, step, level_off, seasonal)
