"""Burn rate, breach forecasts and early warnings (pure engine, event time)."""

from __future__ import annotations

import json
import math
import random

from hypothesis import given, settings, strategies as st

from tokenfuse.usage.windows import Calendar, Tumbling
from tokenfuse.worker.engine.burn_rate import BurnRate
from tokenfuse.worker.engine.forecast import (EarlyWarning, ForecastRule, ForecastState, deseasonalised, eta,
                                              forecast, forecast_alert, projection, step_warning)
from tokenfuse.worker.engine.seasonal import HOUR_MS, WEEK_HOURS, WEEK_MS, HourOfWeekProfile, hour_of_week

HOUR = Tumbling(3_600_000)
LIMIT = 100_000


def feed(state: ForecastState, rate_at, until_ms: int, start_ms: int = 0, step_ms: int = 1000, seed: int = 1):
    """Per-second deltas with Poisson-ish noise around rate_at(t) per ms; returns the spend."""
    rng, spent = random.Random(seed), 0
    for t in range(start_ms, until_ms, step_ms):
        amount = max(0, int(rng.gauss(rate_at(t) * step_ms, math.sqrt(rate_at(t) * step_ms * 4) + 1e-9)))
        if amount:
            state.rate.observe(t, amount)
            spent += amount
    return spent


def test_a_steady_stream_is_forecast_to_breach_when_its_rate_says_so():
    state = ForecastState.start(HOUR, 0)
    rate = LIMIT / 3_000_000  # reaches the limit at 50 min
    spent = feed(state, lambda t: rate, 900_000)
    fc = forecast(state.rate, spent, LIMIT, 0, 3_600_000, 900_000)
    assert abs(fc.rate_per_hour - rate * HOUR_MS) / (rate * HOUR_MS) < 0.1
    assert abs(fc.eta_p50 - 3_000_000) < 0.15 * (3_000_000 - 900_000)
    assert fc.eta_p10 < 3_000_000 < (fc.eta_p90 or 3_600_000)
    assert fc.projected > LIMIT


def test_a_stream_below_its_budget_is_not_in_this_window():
    state = ForecastState.start(HOUR, 0)
    spent = feed(state, lambda t: LIMIT / 7_200_000, 1_200_000)  # half the limit by the end
    fc = forecast(state.rate, spent, LIMIT, 0, 3_600_000, 1_200_000)
    assert fc.eta_p50 is None and fc.eta_p90 is None
    assert 0.4 * LIMIT < fc.projected < 0.6 * LIMIT


def test_an_accelerating_stream_gets_an_earlier_eta_than_its_average_says():
    state = ForecastState.start(HOUR, 0)
    spent = feed(state, lambda t: LIMIT / 3_600_000 * (0.2 + 2 * t / 3_600_000), 1_500_000)
    fc = forecast(state.rate, spent, LIMIT, 0, 3_600_000, 1_500_000)
    naive = 1_500_000 + (LIMIT - spent) / (spent / 1_500_000)
    truth = 3_600_000 * (math.sqrt(0.04 + 2) - 0.2) / 2  # where 0.2 u + u^2 = 1
    assert fc.eta_p50 < naive
    assert abs(fc.eta_p50 - truth) < abs(naive - truth)


def test_an_early_warning_fires_once_and_clears_with_hysteresis_when_the_trend_falls_back():
    rule = ForecastRule(warn_before_ms=600_000, action="alert")
    state, spent, moves = ForecastState.start(HOUR, 0), 0, []
    rng = random.Random(3)
    for t in range(0, 3_600_000, 1000):
        fast = t < 1_500_000
        amount = rng.randint(50, 70) if fast else rng.randint(0, 4)  # ~60/s: breach at ~28 min; then nearly stops
        state.rate.observe(t, amount)
        spent += amount
        move = step_warning(state, rule, HOUR, spent, LIMIT, 0, 3_600_000, t)
        if move:
            moves.append((move, t))
    assert [m for m, _ in moves] == ["forecast", "forecast_cleared"]
    fired, cleared = moves[0][1], moves[1][1]
    assert fired < 1_500_000 < cleared
    assert state.warning.episodes == 1 and not state.warning.active


def test_a_new_window_starts_with_no_warning_up():
    state = ForecastState(BurnRate.start(HOUR, 0), EarlyWarning(window_start=0, active=True, episodes=2))
    step_warning(state, ForecastRule(600_000, "alert"), HOUR, 10, LIMIT, 3_600_000, 7_200_000, 3_600_001)
    assert state.warning.window_start == 3_600_000 and state.warning.episodes == 0


def test_a_forecast_alert_has_a_deterministic_id_and_the_band():
    state = ForecastState.start(HOUR, 0)
    spent = feed(state, lambda t: LIMIT / 3_000_000, 900_000)
    fc = forecast(state.rate, spent, LIMIT, 0, 3_600_000, 900_000)
    budget = {"id": "b1", "metric": "cost_micro_usd", "limit": LIMIT, "window": "1h"}
    alert = forecast_alert("forecast", budget, "team:a/b", ForecastRule(1_800_000, "throttle"), fc, 1, "e-9")
    assert alert["alert_id"] == "b1|team:a/b|0|forecast|1"
    assert (alert["eta_p10"], alert["eta_p50"], alert["eta_p90"]) == (fc.eta_p10, fc.eta_p50, fc.eta_p90)
    assert alert["action"] == "throttle" and "ETA" in alert["message"]


def test_an_hour_of_week_profile_moves_the_eta_into_busy_hours():
    """Office hours (9-18 UTC on weekdays) spend; at 18:00 on Monday the next breach comes on
    Tuesday morning, not overnight as a straight line would say."""
    busy = tuple(1000.0 if h // 24 < 5 and 9 <= h % 24 < 18 else 0.0 for h in range(WEEK_HOURS))
    profile = HourOfWeekProfile(busy, weeks=4)
    monday = 4 * 86_400_000  # 1970-01-05, a Monday
    assert hour_of_week(monday) == 0
    month = Calendar("month")
    state = ForecastState.start(month, monday)
    spent = 0
    for hour in range(9, 18):
        for minute in range(60):
            t = monday + hour * HOUR_MS + minute * 60_000
            spent += 17
            state.rate.observe(t, deseasonalised(17, t, profile))
    now = monday + 18 * HOUR_MS
    proj = projection(state.rate, now, profile)
    limit = spent + 2000  # two more busy hours of spend
    when = eta(proj, limit - spent, now, now + 7 * 86_400_000)
    assert 9 <= (when - monday) // HOUR_MS - 24 <= 12  # Tuesday between 09:00 and 12:00
    assert math.isclose(profile.shape.integral(0, WEEK_MS), WEEK_MS, rel_tol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3_599_000), st.integers(0, 5000)), min_size=1, max_size=60),
       st.integers(0, 3_600_000))
def test_the_band_is_ordered_and_the_state_survives_its_json_form(deltas, now):
    state = ForecastState.start(HOUR, 0)
    for t, amount in deltas:
        state.rate.observe(t, amount)
    again = ForecastState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    spent = sum(a for _, a in deltas)
    fc = forecast(state.rate, spent, spent + 10_000, 0, 3_600_000, max(now, state.rate.last_ms))
    order = [x if x is not None else math.inf for x in (fc.eta_p10, fc.eta_p50, fc.eta_p90)]
    assert order == sorted(order)
    assert fc.projected >= spent and fc.rate_per_hour >= 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 600_000), st.integers(1, 1000)), min_size=1, max_size=40), st.randoms())
def test_the_rate_does_not_depend_on_the_order_deltas_arrive_in(deltas, rnd):
    in_order, shuffled = BurnRate.start(HOUR, 0), BurnRate.start(HOUR, 0)
    for t, amount in sorted(deltas):
        in_order.observe(t, amount)
    mixed = list(deltas)
    rnd.shuffle(mixed)
    for t, amount in mixed:
        shuffled.observe(t, amount)
    end = max(t for t, _ in deltas)
    assert math.isclose(in_order.level_at(end), shuffled.level_at(end), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(in_order.slow, shuffled.slow, rel_tol=1e-9, abs_tol=1e-12)
