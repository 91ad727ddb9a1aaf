"""`tokenfuse sink` against the real broker and embedded ClickHouse, as a separate process:
every record stored exactly once through duplicates, a SIGKILL between insert and commit, and
ClickHouse failing for a while. Queries go through the sink's read-only endpoint, or a
`tokenfuse sql` process when no sink runs (this pytest process keeps its own chDB folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.helpers import UsageProducer, usage_event
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import wait_until
from tokenfuse.history.client import QueryError
from tokenfuse.history.sink import FAULT_ENV
from tokenfuse.history.sql import run_sql
from tokenfuse.dev.process import RoleProcess
from tokenfuse.budgets.signed import sign_budget, signed_deletion
from tokenfuse.control.signing import encode_signed


def value(settings, query):
    return run_sql(settings, query)["rows"][0][0]


def sql_process(settings, query):
    """`tokenfuse sql` in a process of its own (opens the embedded engine when no sink runs)."""
    result = subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", "sql", "--format", "json", query],
                            env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def committed_to_end(settings) -> bool:
    """Has the sink's group committed every usage record (offsets = high watermarks)?"""
    consumer = Consumer({**settings.kafka_config, "group.id": f"{settings.app_id}-sink"})
    try:
        topic = settings.topic("usage")
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        for tp in consumer.committed(parts, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if max(tp.offset, 0) != high:  # nothing committed (negative) is fine for an empty partition
                return False
        return True
    finally:
        consumer.close()


def produce_usage(settings, events):
    producer = UsageProducer(settings)
    for event in events:
        producer.send(event)
    producer.flush()


def test_every_record_once_with_duplicates_and_malformed_input(settings, tmp_path):
    now = int(time.time() * 1000)
    events = [usage_event(f"agent-{n % 5}", 100 + n, when_ms=now - n) for n in range(200)]
    replayed = [dict(e) for e in events[:30]]  # an SDK replaying its spool: same ids, new offsets
    produce_usage(settings, events)
    producer = UsageProducer(settings)
    producer.send_raw(b"mallory", b"\x00not avro")
    producer.send(usage_event("neg", 1, input_tokens=-5))
    producer.flush()
    produce_usage(settings, replayed)

    alert = {"alert_id": "b|agent:x|0|100", "kind": "threshold", "scope": "agent:x", "created_at": now}
    state = {"scope": "agent:x", "state": "block", "issued_at": now, "until": now + 60_000}
    p = Producer(settings.kafka_config)
    for _ in range(2):  # the worker may publish an alert again after a crash: same alert_id
        p.produce(settings.topic("alerts"), key=b"agent:x", value=codec("Alert").encode(alert))
    p.produce(settings.topic("control"), key=b"agent:x", value=encode_signed(state, settings.control_signer()))
    p.produce(settings.topic("control"), key=b"agent:y", value=codec("ControlState").encode(
        {"scope": "agent:y", "state": "block", "issued_at": now}))  # unsigned: stored, flagged
    signer = settings.budget_signer()
    p.produce(settings.topic("budgets"), key=b"b1", value=codec("Budget").encode(sign_budget(
        {"id": "b1", "scope": "agent:*", "metric": "total_tokens", "window": "1h", "limit": 10}, signer)))
    p.produce(settings.topic("budgets"), key=b"b1", value=None)  # a bare tombstone deletes nothing
    p.produce(settings.topic("budgets"), key=b"b1", value=codec("Budget").encode(signed_deletion("b1", signer, now)))
    assert p.flush(30) == 0

    with RoleProcess("sink", settings, tmp_path / "sink.log") as sink:
        assert wait_until(lambda: committed_to_end(settings), 60), sink.tail()
        assert value(settings, "SELECT count() FROM usage_events") == 200
        assert value(settings, "SELECT uniqExact(event_id) FROM usage_events") == 200
        assert value(settings, "SELECT sum(input_tokens) FROM usage_events") == sum(100 + n for n in range(200))
        assert value(settings, "SELECT sum(events) FROM usage_by_minute WHERE scope = 'global'") == 200
        assert value(settings, "SELECT count() FROM alerts") == 1
        assert run_sql(settings, "SELECT scope, signed FROM control_changes ORDER BY scope")["rows"] == [
            ["agent:x", True], ["agent:y", False]]
        assert run_sql(settings, "SELECT deleted, scope FROM budgets_history ORDER BY kafka_offset")["rows"] == [
            [False, "agent:*"], [True, ""]]
        # Read-only for users, enforced by ClickHouse.
        for statement in ("INSERT INTO usage_events (event_id) VALUES ('x')", "DROP TABLE usage_events",
                          "ALTER TABLE usage_events DELETE WHERE 1"):
            with pytest.raises(QueryError, match="readonly"):
                run_sql(settings, statement)
        assert value(settings, "SELECT count() FROM usage_events") == 200
        # The CLI goes through the running sink too (the sink holds the engine's lock).
        assert sql_process(settings, "SELECT count() AS n FROM usage_events") == [{"n": 200}]
        metrics = urllib.request.urlopen(f"http://{settings.sink_host}:{settings.sink_port}/metrics",
                                         timeout=10).read().decode()
        assert "tokenfuse_sink_usage_total 200.0" in metrics
        # invalid: bytes, negative tokens, the bare budgets tombstone; duplicates: 30 replays + 1 alert
        for line in ("tokenfuse_sink_invalid_total 3.0", "tokenfuse_sink_duplicates_total 31.0",
                     "tokenfuse_sink_insert_retries_total 0.0", "tokenfuse_sink_lag_records 0.0"):
            assert line in metrics
        assert "tokenfuse_sink_lag_records 0.0" in metrics
    stats_line = [line for line in sink.tail(200).splitlines() if "malformed" in line]
    assert stats_line, "malformed records are logged"


def test_sigkill_between_insert_and_commit_then_restart_stores_each_event_once(settings, tmp_path):
    settings = settings.model_copy(update={"sink_batch_rows": 100})  # the crash lands mid-stream
    now = int(time.time() * 1000)
    events = [usage_event(f"agent-{n % 3}", 10, when_ms=now - n) for n in range(300)]
    produce_usage(settings, events)
    log = tmp_path / "sink.log"
    crashing = RoleProcess("sink", settings, log, extra_env={FAULT_ENV: "kill-after-insert"}).start()
    assert wait_until(lambda: crashing.proc.poll() is not None, 60), crashing.tail()
    assert crashing.proc.returncode == -9
    # It died after inserting and before committing: rows are there, offsets are not.
    stored_before = sql_process(settings, "SELECT count() AS n FROM usage_events")[0]["n"]
    assert 0 < int(stored_before) < 300
    assert not committed_to_end(settings)

    with RoleProcess("sink", settings, log) as sink:
        assert wait_until(lambda: committed_to_end(settings), 60), sink.tail()
        assert value(settings, "SELECT count() FROM usage_events") == 300
        assert value(settings, "SELECT uniqExact(event_id) FROM usage_events") == 300
        assert value(settings, "SELECT sum(events) FROM usage_by_hour WHERE scope = 'global'") == 300


def test_clickhouse_failing_for_a_while_loses_nothing_and_duplicates_nothing(settings, tmp_path):
    now = int(time.time() * 1000)
    events = [usage_event("agent", 7, when_ms=now - n) for n in range(120)]
    produce_usage(settings, events)
    with RoleProcess("sink", settings, tmp_path / "sink.log", extra_env={FAULT_ENV: "fail-inserts:3"}) as sink:
        assert wait_until(lambda: "ClickHouse unavailable, retrying" in sink.tail(), 30), sink.tail()
        assert not committed_to_end(settings)  # nothing committed while ClickHouse fails
        assert wait_until(lambda: committed_to_end(settings), 60), sink.tail()
        assert sink.tail(200).count("ClickHouse unavailable, retrying") == 3
        produce_usage(settings, events[:40])  # and a replay on top, after the outage
        produce_usage(settings, [usage_event("late", 1, when_ms=now)])
        assert wait_until(lambda: committed_to_end(settings), 60), sink.tail()
        assert value(settings, "SELECT count() FROM usage_events") == 121
        assert value(settings, "SELECT uniqExact(event_id) FROM usage_events") == 121
