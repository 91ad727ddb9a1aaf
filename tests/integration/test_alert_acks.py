"""Forecast/loop/spike alerts reach ClickHouse with their new fields, and `tokenfuse alerts ack`
publishes a signed ack (the detector's quiet period) that the sink records with who and why."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from confluent_kafka import Producer

from tokenfuse.control.acks import ack_key, is_quiet
from tokenfuse.control.signing import verify_record
from tokenfuse.dev.process import RoleProcess
from tokenfuse.history.sql import run_sql
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower, wait_until


def tokenfuse(settings, *args):
    return subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", *args], env={**os.environ, **settings.to_env()},
                          capture_output=True, text=True, timeout=60)


def rows(settings, query):
    return run_sql(settings, query)["rows"]


def test_detector_alerts_are_stored_and_an_expected_ack_quiets_the_detector(settings, tmp_path):
    now = int(time.time() * 1000)
    forecast = {"alert_id": "b1|team:acme/search|0|forecast|1", "kind": "forecast", "scope": "team:acme/search",
                "budget_id": "b1", "created_at": now, "eta_p10": now + 60_000, "eta_p50": now + 120_000,
                "eta_p90": None, "projected": 1500, "burn_rate_per_hour": 12.5}
    loop = {"alert_id": "b2|run:r-1|loop|ab12|5", "kind": "loop", "scope": "run:r-1", "budget_id": "b2",
            "created_at": now, "fingerprint": "ab12", "repeats": 5, "action": "block"}
    producer = Producer(settings.kafka_config)
    for alert in (forecast, loop):
        producer.produce(settings.topic("alerts"), key=alert["scope"].encode(), value=codec("Alert").encode(alert))
    assert producer.flush(30) == 0
    verifier = settings.control_verifier()

    def decode(data):
        ack = codec("AlertAck").decode(data)
        verify_record("AlertAck", ack, verifier, "alert ack")
        return ack

    acks = CompactedTopicFollower(settings, settings.topic("acks"), decode)
    try:
        with RoleProcess("sink", settings, tmp_path / "sink.log") as sink:
            assert wait_until(lambda: rows(settings, "SELECT count() FROM alerts")[0][0] == 2, 60), sink.tail()
            assert rows(settings, "SELECT kind, toUnixTimestamp64Milli(eta_p50), eta_p90, projected, "
                                  "fingerprint, repeats FROM alerts ORDER BY kind") == [
                ["forecast", now + 120_000, None, 1500, None, None], ["loop", None, None, None, "ab12", 5]]

            acked = tokenfuse(settings, "alerts", "ack", loop["alert_id"], "--expected", "--until", "2h",
                              "--reason", "replay test of the retry path", "--by", "alice")
            assert acked.returncode == 0, acked.stderr
            assert "quiet until" in acked.stdout
            assert wait_until(lambda: ack_key("b2", "loop", "run:r-1") in acks.snapshot(), 20)
            assert is_quiet(acks.snapshot(), "b2", "loop", "run:r-1", now)
            assert not is_quiet(acks.snapshot(), "b2", "loop", "run:r-1", now + 3 * 3_600_000)
            assert not is_quiet(acks.snapshot(), "b2", "spike", "run:r-1", now)
            assert wait_until(lambda: rows(settings, "SELECT count() FROM alert_acks")[0][0] == 1, 60), sink.tail()
            assert rows(settings, "SELECT alert_id, kind, scope, expected, acked_by, reason, signed FROM alert_acks") == [
                [loop["alert_id"], "loop", "run:r-1", True, "alice", "replay test of the retry path", True]]

            unknown = tokenfuse(settings, "alerts", "ack", "nope", "--reason", "x")
            assert unknown.returncode == 1 and unknown.stderr.startswith("tokenfuse: no alert 'nope' in the history")
            no_until = tokenfuse(settings, "alerts", "ack", loop["alert_id"], "--expected", "--reason", "x")
            assert no_until.returncode == 1 and "--expected needs --until" in no_until.stderr
            assert "Traceback" not in unknown.stderr + no_until.stderr
    finally:
        acks.close()
