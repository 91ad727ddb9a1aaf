"""The budget engine against a generated stream of 100k events: every sampled scope × window total
equals the ground truth computed in the test, each threshold fires exactly once, scopes under
their thresholds fire nothing, and the control topic holds exactly the expected states."""

from __future__ import annotations

import time

import pytest

from tests.engine_stream import (DAY, StreamProducer, TotalsIndex, budgets_for, check_alerts, check_control,
                                 counters, expected_outcome, generate, sample_scopes, totals_mismatches,
                                 worker_settings)
from tests.helpers import publish_budget
from tokenfuse.kafka.follow import wait_until
from tokenfuse.dev.process import RoleProcess

GRACE_S = 5


@pytest.mark.timeout(240)
def test_100k_events_totals_equal_ground_truth_and_thresholds_fire_once(settings, control, tmp_path):
    settings = worker_settings(settings.model_copy(update={"grace_seconds": GRACE_S}), "w1")
    stream = generate(100_000, settings.partitions, GRACE_S * 1000, seed=11)
    index = TotalsIndex(stream.counted)
    assert stream.late > 500 and stream.duplicates > 2000  # the stream really tests both
    budgets = budgets_for(index, DAY)
    for b in budgets:
        publish_budget(settings, **b)
    worker = RoleProcess("worker", settings, tmp_path / "w1.log").start(timeout=90)
    try:
        started = time.monotonic()
        StreamProducer(settings).send(stream.sent)
        counted = len(stream.counted)
        assert wait_until(lambda: counters(settings).get("events", 0) >= counted, timeout=150, interval=0.5), \
            f"worker counted {counters(settings)} of {counted}\n{worker.tail()}"
        print(f"100k events accounted in {time.monotonic() - started:.1f}s")
        scopes = sample_scopes(index, seed=11)
        # Accounting (stage 2) trails the ingest counter: wait for it, then compare everything.
        wait_until(lambda: not totals_mismatches([settings], index, scopes, limit=1), timeout=60, interval=0.5)
        print(f"100k events in the totals in {time.monotonic() - started:.1f}s")
        problems = totals_mismatches([settings], index, scopes)
        assert not problems, "\n".join(problems) + f"\ncounters {counters(settings)}\n" + worker.tail()
        got = counters(settings)
        assert (got["events"], got["duplicates"], got["late_events"], got.get("dlq", 0)) == (
            counted, stream.duplicates, stream.late, 0), worker.tail()

        alert_ids, states = expected_outcome(index, budgets, DAY, int(time.time() * 1000))
        assert any(i.startswith("org-over|org:o0|") and i.endswith("|100") for i in alert_ids)
        assert not any(i.startswith(("model-low|", "global-low|")) for i in alert_ids)
        check_alerts(settings, alert_ids)
        assert states["org:o0"][0] == "block" and states["team:o1/t1"][0] == "throttle"
        check_control(control, states)
    except BaseException:
        print(worker.tail(60))
        raise
    finally:
        worker.stop()
