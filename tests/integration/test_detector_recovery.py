"""Detector alerts are exactly once across a worker SIGKILL: the loop and spike states live in
the scope records (the changelog) and alert ids are deterministic, so the restarted worker
neither repeats an alert the killed one committed nor loses one it had not."""

from __future__ import annotations

import random
import time

import pytest

from tests.engine_stream import check_alerts, committed_everything, worker_settings
from tests.helpers import UsageProducer, publish_budget, usage_event
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.follow import wait_until

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
