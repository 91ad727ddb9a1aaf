"""Loop and spike detectors (pure, event time)."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings, strategies as st

from tokenfuse.worker.engine.detectors import (MAX_FINGERPRINTS, LoopRule, LoopState, SpikeRule, SpikeState, loop_alert,
                                               spike_alert)

RULE = LoopRule(repeats=5, within_ms=60_000, action="block", per="run")
SPIKE = SpikeRule(factor=3.0, baseline_ms=3_600_000, action="alert")


def test_a_loop_is_caught_at_the_configured_repeat_and_once_per_episode():
    state = LoopState()
    fired = [state.observe(RULE, "fp-1", t * 5000) for t in range(12)]
    assert fired.index(True) == 4 and fired.count(True) == 1
    # Silent for longer than the span: the episode ends; repeating again is a new loop.
    state.forget(RULE, 200_000)
    again = [state.observe(RULE, "fp-1", 200_000 + t * 5000) for t in range(5)]
    assert again == [False] * 4 + [True]


def test_repeats_spread_wider_than_the_span_and_retries_are_not_loops():
    state = LoopState()
    assert not any(state.observe(RULE, "poll", t * 16_000) for t in range(50))  # polling every 16 s
    assert not any(state.observe(RULE, f"call-{n}", n * 1000 + k) for n in range(30) for k in range(3))
    assert state.observe(RULE, "burst", 5_000_000, count=5)  # five in one second's delta


def test_the_loop_state_stays_bounded_and_survives_its_json_form():
    state = LoopState()
    for n in range(500):
        state.observe(RULE, f"fp-{n}", n)
    assert len(state.seen) <= MAX_FINGERPRINTS
    assert LoopState.from_json(json.loads(json.dumps(state.to_json()))) == state
    alert = loop_alert({"id": "b", "metric": "total_tokens"}, "run:r", RULE, "fp-499", 499, "e", 1)
    assert alert["alert_id"] == "b|run:r|loop|fp-499|499" and alert["repeats"] == 5 and alert["action"] == "block"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 300_000), min_size=1, max_size=30))
def test_a_loop_fires_iff_some_span_holds_the_repeats(times):
    times = sorted(times)
    state = LoopState()
    fired = []
    for t in times:
        state.forget(RULE, t)
        fired.append(state.observe(RULE, "fp", t))
    exists = any(times[i + RULE.repeats - 1] - times[i] < RULE.within_ms for i in range(len(times) - RULE.repeats + 1))
    assert any(fired) == exists


def steady(state: SpikeState, start: int, end: int, per_second: float, seed: int = 5):
    rng = random.Random(seed)
    out = []
    for t in range(start, end, 1000):
        spike = state.observe(SPIKE, t, rng.expovariate(1 / per_second))
        if spike:
            out.append((t, spike))
    return out


def test_a_steady_scope_has_no_spike_and_a_jump_is_caught_within_two_minutes():
    state = SpikeState()
    assert steady(state, 0, 3_600_000, 100) == []
    caught = steady(state, 3_600_000, 3_900_000, 500, seed=6)
    assert caught and caught[0][0] - 3_600_000 <= 120_000
    spike = caught[0][1]
    assert spike.factor >= 3 and 80 * 3600 < spike.baseline_per_hour < 120 * 3600
    alert = spike_alert({"id": "b", "metric": "cost_micro_usd"}, "agent:a", SPIKE, spike, caught[0][0], "", 1)
    assert alert["kind"] == "spike" and alert["factor"] == round(spike.factor, 3)
    assert SpikeState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_no_spike_before_the_baseline_is_known():
    state = SpikeState()
    steady(state, 0, 600_000, 100)
    assert steady(state, 600_000, 700_000, 2000) == []  # 10 min of a 1 h baseline: too short to judge
