"""Detector alerts are exactly once across a worker SIGKILL: the forecast, loop and spike states
live in the scope records (the changelog) and alert ids are deterministic, so the restarted
worker neither repeats an alert the killed one committed nor loses one it had not."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

import pytest

from tests.engine_stream import check_alerts, committed_everything, worker_settings
from tests.helpers import UsageProducer, publish_budget, usage_event
from tokenfuse.control.signing import Signer
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import wait_until
from tokenfuse.usage.windows import parse_window
from tokenfuse.worker.engine.deltas import Delta
from tokenfuse.worker.engine.plugins import ForecastDetector, SpikeDetector
from tokenfuse.worker.engine.record import ScopeRecord
from tokenfuse.worker.engine.rules import BudgetIndex
from tokenfuse.worker.engine.settle import Settler

RUNS = 300
REPEATS = 3


@pytest.mark.timeout(300)
def test_loop_alerts_are_exactly_once_across_a_sigkill(settings, tmp_path):
    publish_budget(settings, id="runs", scope="run:*", metric="total_tokens", window="1d", limit=10**12,
                   loop={"repeats": REPEATS, "within_ms": 600_000, "action": "alert", "per": "run"})
    s = worker_settings(settings, "w1")
    worker = RoleProcess("worker", s, tmp_path / "w1.log").start(timeout=90)
    usage, now = UsageProducer(settings), int(time.time() * 1000)
    expected = set()
    try:
        for repeat in range(REPEATS):  # every run repeats its request, one round at a time
            for n in range(RUNS):
                event = usage_event(f"agent-{n % 7}", 10, run=f"r-{n}", request_fingerprint=f"fp-{n}",
                                    when_ms=now + repeat * 1000)
                usage.send(event)
                if repeat == REPEATS - 1:
                    expected.add(f"runs|run:r-{n}|loop|fp-{n}|{event['event_time'] - event['event_time'] % 1000}")
            usage.flush()
            if repeat == REPEATS - 2:
                # A random crash point while the worker works through the rounds (not a wait for
                # anything: where the kill lands is meant to be random).
                time.sleep(random.uniform(0.2, 1.5))
                worker.kill()
                worker.start(timeout=120)
        assert wait_until(lambda: committed_everything(s, s.partitions), timeout=90), worker.tail()
        check_alerts(settings, expected)
    except BaseException:
        print(worker.tail(60))
        raise
    finally:
        worker.stop()


HOUR = 3_600_000
STEP_MS = 30_000  # one call per agent every 30 s of event time
AGENTS = 30  # of each kind


def forecast_and_spike_traffic(window_start: int) -> list[dict]:
    """An hour of event time in the past, in event-time order, one agent per team: the `ramps`
    org's teams spend more with every call (a breach ~50 min in, forecast well ahead of it);
    the `steady` org's spend 100 tokens a call, ten times more for five minutes from minute 40
    (a spike)."""
    events = []
    for k in range(HOUR // STEP_MS - 10):
        for n in range(AGENTS):
            when = window_start + k * STEP_MS + n * 100
            events.append(usage_event(f"a{n}", 100 + 10 * k, org="ramps", team=f"t{n}", when_ms=when))
            spiking = 80 <= k < 90
            events.append(usage_event(f"a{n}", 1000 if spiking else 100, org="steady", team=f"t{n}",
                                      when_ms=when + 50))
    return events


def reference_alert_ids(budgets: list[dict], events: list[dict]) -> set[str]:
    """The alert ids the pure engine gives for the teams (one delta per call: calls of one team
    are 30 s apart), what the worker must publish exactly once."""
    spec = parse_window("1h")
    settler = Settler({spec.name: spec}, Counter(), Signer("k", b"k" * 32, "test"),
                      [ForecastDetector(), SpikeDetector()])
    index = BudgetIndex([{"timezone": "UTC", "updated_at": 0, **b} for b in budgets])
    records: dict[str, ScopeRecord] = defaultdict(ScopeRecord)
    ids = set()
    for e in events:
        scope, second = f"team:{e['org']}/{e['team']}", e["event_time"] - e["event_time"] % 1000
        delta = Delta(scope, second, e["input_tokens"], events=1, last_event_id=e["event_id"])
        for out in settler.settle(scope, records[scope], [delta], index, second):
            if out.topic == "alerts":
                ids.add(codec("Alert").decode(out.value)["alert_id"])
    return ids


@pytest.mark.timeout(300)
def test_forecast_and_spike_alerts_are_exactly_once_across_a_sigkill(settings, tmp_path):
    # The hour before last: every window of it has ended, and by the restart's sweep (at the
    # worker's clock) the burn rates have decayed to nothing: only the replayed stream alerts.
    now = int(time.time() * 1000)
    window_start = now - now % HOUR - 2 * HOUR
    budgets = [
        {"id": "fc", "scope": "team:ramps/*", "metric": "total_tokens", "window": "1h", "limit": 59_500,
         "thresholds": [{"percent": 100, "action": "block"}],
         "forecast": {"warn_before_ms": 600_000, "action": "alert"}},
        {"id": "sp", "scope": "team:steady/*", "metric": "total_tokens", "window": "1h", "limit": 10**9,
         "thresholds": [{"percent": 100, "action": "block"}],
         "spike": {"factor": 3.0, "baseline_ms": 600_000, "action": "alert"}},
    ]
    for budget in budgets:
        publish_budget(settings, **budget)
    events = forecast_and_spike_traffic(window_start)
    expected = reference_alert_ids(budgets, events)
    kinds = Counter(i.split("|")[3] if "|spike|" not in i else "spike" for i in expected)
    assert kinds["forecast"] == AGENTS and kinds["spike"] == AGENTS, kinds  # the traffic does what it says

    s = worker_settings(settings, "w1")
    worker = RoleProcess("worker", s, tmp_path / "w1.log").start(timeout=90)
    usage = UsageProducer(settings)
    try:
        half = len(events) // 2
        for e in events[:half]:
            usage.send(e)
        usage.flush()
        # A random crash point while the worker works through the stream (not a wait for
        # anything: where the kill lands is meant to be random).
        time.sleep(random.uniform(0.2, 2.0))
        worker.kill()
        for e in events[half:]:
            usage.send(e)
        usage.flush()
        worker.start(timeout=120)
        assert wait_until(lambda: committed_everything(s, s.partitions), timeout=120), worker.tail()
        check_alerts(settings, expected)
    except BaseException:
        print(worker.tail(60))
        raise
    finally:
        worker.stop()
