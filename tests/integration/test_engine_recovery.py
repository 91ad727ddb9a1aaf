"""The budget engine survives crashes and rebalances exactly: SIGKILLed three times mid-stream, or
one of two workers dying, the totals still equal the ground truth, no threshold fires twice and
no block is lost. Topics have 4 partitions here."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.engine_stream import (DAY, StreamProducer, TotalsIndex, budgets_for, check_alerts, check_control,
                                 committed_everything, counters, expected_outcome, fresh_settings, generate, get_json,
                                 sample_scopes, totals_mismatches, worker_settings, worker_totals)
from tests.helpers import publish_budget
from tokenfuse.kafka.follow import wait_until
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.topics import create_topics, delete_topics

GRACE_S = 5


@pytest.fixture
def settings(settings):
    """The fixture's settings on topics of their own with 4 partitions and a 5 s grace period
    (the `control` fixture follows these)."""
    s = fresh_settings(settings, partitions=4, grace_seconds=GRACE_S)
    create_topics(s)
    yield s
    if not os.environ.get("TOKENFUSE_TEST_KEEP_TOPICS"):  # keep them to inspect a failure
        delete_topics(s)


def assert_exact(workers: list[RoleProcess], index: TotalsIndex, scopes: list[str], timeout: float) -> None:
    """Wait until the workers' totals equal the ground truth for `scopes`; fail with what differs."""
    workers_settings, scopes = [w.settings for w in workers], ["global"] + scopes
    # Every scope, not a few: the stage that settles totals works through its partitions in
    # its own order, so one partition's scopes can still lag when another's are exact.
    wait_until(lambda: not totals_mismatches(workers_settings, index, scopes, limit=1), timeout=timeout, interval=0.5)
    problems = totals_mismatches(workers_settings, index, scopes)
    assert not problems, "\n".join(problems) + "".join(f"\n--- {w.log_path.name}\n{w.tail()}" for w in workers)


def publish_budgets(settings, index: TotalsIndex) -> list[dict]:
    budgets = budgets_for(index, DAY)
    for b in budgets:
        publish_budget(settings, **b)
    return budgets


def check_thresholds_and_blocks(settings, control, index: TotalsIndex, budgets: list[dict]) -> None:
    alert_ids, states = expected_outcome(index, budgets, DAY, int(time.time() * 1000))
    check_alerts(settings, alert_ids)  # duplicates by alert_id fail here
    assert states["org:o0"][0] == "block"
    check_control(control, states)  # every scope over budget still ends on `block`


@pytest.mark.timeout(420)
def test_sigkill_three_times_mid_stream_keeps_totals_exact(settings, control, tmp_path):
    stream = generate(40_000, 4, GRACE_S * 1000, seed=21)
    index = TotalsIndex(stream.counted)
    budgets = publish_budgets(settings, index)
    worker = RoleProcess("worker", worker_settings(settings, "w1"), tmp_path / "w1.log").start(timeout=90)
    rng = random.Random(21)
    producer = StreamProducer(settings)
    segments = [stream.sent[i * 10_000:(i + 1) * 10_000] for i in range(4)]
    try:
        for segment in segments[:3]:
            producer.send(segment)
            # A random crash point while the worker works through the segment (not a wait for
            # anything: where the kill lands is meant to be random).
            time.sleep(rng.uniform(0.2, 2.0))
            worker.kill()
            started = time.monotonic()
            worker.start(timeout=120)
            print(f"restart after SIGKILL ready in {time.monotonic() - started:.1f}s")
        producer.send(segments[3])
        assert_exact([worker], index, sample_scopes(index, seed=21, per_kind=100), timeout=120)
        check_thresholds_and_blocks(settings, control, index, budgets)
    except BaseException:
        print(worker.tail(60))
        raise
    finally:
        worker.stop()


@pytest.mark.timeout(120)
def test_late_event_stays_late_after_a_restart(settings, tmp_path):
    """Lateness is judged against the newest event time seen on the partition, also when that was
    seen by the worker's previous life: a crash must not make late events count."""
    s = worker_settings(settings, "w1")
    now = int(time.time() * 1000)
    on_time = [(0, e) for e in generate(200, 1, GRACE_S * 1000, seed=31, now_ms=now, dup_rate=0, late_rate=0).counted]
    late = dict(on_time[-1][1], event_id="late-after-restart", event_time=now - 60_000)
    worker = RoleProcess("worker", s, tmp_path / "w1.log").start(timeout=90)
    try:
        producer = StreamProducer(s)
        producer.send(on_time)
        assert wait_until(lambda: (worker_totals([s], "global") or {}).get("3600s", {}).get("events")
                          == sum(1 for _, e in on_time if e["event_time"] >= now - now % 3_600_000), timeout=30)
        assert wait_until(lambda: committed_everything(s, s.partitions), timeout=30)
        worker.kill()
        worker.start(timeout=120)
        marker = dict(on_time[-1][1], event_id="marker-after-restart", event_time=now)
        producer.send([(0, late), (0, marker)])
        assert wait_until(lambda: sum(counters(s).get(k, 0) for k in ("events", "late_events")) >= 2,
                          timeout=30), worker.tail()
        got = counters(s)
        assert (got.get("events"), got.get("late_events")) == (1, 1), f"{got}\n{worker.tail()}"
    finally:
        worker.stop()


@pytest.mark.timeout(300)
def test_survivor_of_two_workers_takes_over_and_totals_stay_exact(settings, control, tmp_path):
    stream = generate(30_000, 4, GRACE_S * 1000, seed=41)
    index = TotalsIndex(stream.counted)
    half = len(stream.sent) // 2
    first_ids = {e["event_id"] for _, e in stream.sent[:half]}
    first = TotalsIndex([e for e in stream.counted if e["event_id"] in first_ids])  # the first half's truth
    budgets = publish_budgets(settings, index)
    workers = [RoleProcess("worker", worker_settings(settings, name), tmp_path / f"{name}.log")
               for name in ("w1", "w2")]
    try:
        for w in workers:
            w.start(timeout=120)
        producer = StreamProducer(settings)
        producer.send(stream.sent[:half])
        scopes = sample_scopes(index, seed=41, per_kind=100)
        # Both own part of the scopes; together they are exact.
        assert_exact(workers, first, [s for s in scopes if s in first.by_scope], timeout=90)
        owners = {w.settings.web_port: sum(get_json(w.settings, f"/totals?scope={s}")[0] == 200
                                           for s in ("global", *scopes[:50])) for w in workers}
        assert all(owners.values()), f"one worker owns no scope: {owners}"
        workers[1].kill()
        producer.send(stream.sent[half:])
        started = time.monotonic()
        survivor = workers[0]
        assert wait_until(lambda: all(worker_totals([survivor.settings], s) is not None for s in scopes),
                          timeout=150, interval=1.0), survivor.tail()
        print(f"survivor answers for every scope {time.monotonic() - started:.1f}s after the kill")
        assert_exact([survivor], index, scopes, timeout=60)
        check_thresholds_and_blocks(settings, control, index, budgets)
    except BaseException:
        for w in workers:
            print(f"--- {w.log_path.name}\n{w.tail(60)}")
        raise
    finally:
        for w in workers:
            w.stop()
