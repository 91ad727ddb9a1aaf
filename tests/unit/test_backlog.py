"""Backlog awareness as pure logic: the worker's two-hop freshness, and a runtime's blindness."""

from __future__ import annotations

from tokenfuse.config import Settings
from tokenfuse.control.signing import sign_record
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.partitions import scope_partition
from tokenfuse.sdk.backlog import Backlog
from tokenfuse.worker.status import Freshness

SETTINGS = Settings(control_key="k" * 40)


def test_a_partition_is_fresh_as_of_the_usage_whose_deltas_it_has_settled():
    f = Freshness()
    # t=1000: usage ends 10/10, all committed; deltas partition 0 ends at 5 (a marker last), committed 4.
    [s] = f.observe(1000, {0: 10, 1: 10}, {0: 10, 1: 10}, {0: 5}, {0: 4})
    assert (s.fresh_ms, s.deltas_lag) == (1000, 1)
    # t=2000: new usage not ingested yet: usage stays fresh as of 1000, and so does the partition.
    [s] = f.observe(2000, {0: 30, 1: 10}, {0: 10, 1: 10}, {0: 5}, {0: 4})
    assert s.fresh_ms == 1000
    # t=3000: usage ingested (deltas written up to 9) but not settled yet: still 1000.
    [s] = f.observe(3000, {0: 30, 1: 10}, {0: 30, 1: 10}, {0: 9}, {0: 4})
    assert (s.fresh_ms, s.deltas_lag) == (1000, 5)
    # t=4000: deltas settled up to the end noted at 3000: fresh as of the usage known then (3000).
    [s] = f.observe(4000, {0: 30, 1: 10}, {0: 30, 1: 10}, {0: 12}, {0: 9})
    assert s.fresh_ms == 3000


def test_a_worker_that_never_caught_up_reports_no_freshness():
    f = Freshness()
    [s] = f.observe(1000, {0: 10}, {0: 3}, {0: 0}, {0: 0})
    assert s.fresh_ms == 0


def status(partition: int, fresh_ms: int, version: int, partitions: int = 4) -> bytes:
    record = {"partition": partition, "partitions": partitions, "worker": "w:1", "fresh_ms": fresh_ms,
              "usage_lag_events": 0, "deltas_lag_events": 0, "ready": True, "issued_at": version,
              "version": version}
    return codec("WorkerStatus").encode(sign_record("WorkerStatus", record, SETTINGS.control_signer()))


def test_a_runtime_is_blind_for_as_long_as_its_stalest_shared_scope_and_never_goes_back():
    scopes = ["global", "team:acme/search"]
    backlog = Backlog(scopes, SETTINGS.control_verifier(), max_blind_s=5, started_ms=0)
    assert backlog.blind_for_ms(3000) == 3000  # no heartbeat yet: blind since start
    parts = {scope_partition(s, 4) for s in scopes}
    for p in range(4):
        backlog.apply(f"deltas:{p}".encode(), status(p, 10_000 if p in parts else 1, version=10))
    assert backlog.blind_for_ms(12_000) == 2000
    assert not backlog.update(12_000) and not backlog.blind
    for p in parts:  # a restarted worker reports 0 while it catches up: the last picture stands
        backlog.apply(f"deltas:{p}".encode(), status(p, 0, version=11))
    assert backlog.update(16_000) and backlog.blind  # 6 s > 5 s
    p = min(parts)
    backlog.apply(f"deltas:{p}".encode(), status(p, 20_000, version=5))  # an older version: ignored
    assert backlog.fresh[p] == 10_000


def test_a_forged_or_misfiled_heartbeat_changes_nothing():
    backlog = Backlog(["global"], SETTINGS.control_verifier(), max_blind_s=5, started_ms=0)
    forged = codec("WorkerStatus").encode(sign_record("WorkerStatus", codec("WorkerStatus").decode(status(0, 9, 1)),
                                                      Settings(control_key="x" * 40).control_signer()))
    backlog.apply(b"deltas:0", forged)
    backlog.apply(b"deltas:1", status(0, 9, 1))  # keyed for another partition
    assert backlog.rejected == 1 and backlog.fresh == {}
