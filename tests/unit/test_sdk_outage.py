"""The outage state behind the SDK's "Kafka unreachable" / "reachable again" lines, on a fake clock."""

from __future__ import annotations

import logging

import pytest

from tokenfuse.sdk import outage as outage_module
from tokenfuse.sdk.outage import SETTLE_S, KafkaLogGate, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(outage_module.time, "monotonic", c)
    return c


def lines(caplog) -> list[str]:
    return [r.getMessage().split(" (")[0] for r in caplog.records if r.name == "tokenfuse.sdk"]


def test_an_outage_is_announced_once_and_its_end_once(clock, caplog):
    o = Outage()
    o.contact()
    clock.now += SETTLE_S
    for _ in range(500):  # every reconnect attempt of every client
        o.trouble("Connection refused")
        clock.now += 0.05
    o.contact()
    assert lines(caplog) == ["tokenfuse: Kafka unreachable", "tokenfuse: Kafka reachable again after 25.0 s"]
    assert (o.outages, o.connection_errors, o.down) == (1, 500, False)


def test_replies_to_requests_made_before_the_outage_do_not_end_it_at_once(clock, caplog):
    o = Outage()
    o.contact()
    o.trouble("Connection refused")  # the first failure, while acks of earlier sends still arrive
    o.contact()
    clock.now += 1
    o.trouble("Connection refused")
    assert lines(caplog) == [] and not o.down  # not yet: a broker answered moments ago
    clock.now += SETTLE_S
    o.trouble("Connection refused")
    assert lines(caplog) == ["tokenfuse: Kafka unreachable"] and o.down


def test_one_failing_broker_among_answering_ones_is_only_counted(clock, caplog):
    o = Outage()
    for _ in range(100):
        o.contact()
        o.trouble("broker 2: Connection refused")
        clock.now += 1
    assert lines(caplog) == [] and o.connection_errors == 100 and o.outages == 0


def test_lines_queued_during_an_outage_and_served_after_it_start_no_new_one(clock, caplog):
    o = Outage()
    o.trouble("Connection refused")  # a runtime that starts while the broker is down says so at once
    clock.now += 10
    o.contact()
    o.trouble("Connection refused")
    assert lines(caplog) == ["tokenfuse: Kafka unreachable", "tokenfuse: Kafka reachable again after 10.0 s"]
    assert o.unsettled()
    clock.now += SETTLE_S
    assert not o.unsettled()


def test_the_log_gate_counts_connection_failures_and_passes_other_lines(clock, caplog):
    caplog.set_level(logging.DEBUG, logger="tokenfuse.kafka")
    o = Outage()
    gate = KafkaLogGate(o)
    gate.log(logging.ERROR, "%s [%s] %s", "FAIL", "producer-1", "Connect to ipv4#127.0.0.1:9092 failed")
    gate.log(logging.INFO, "%s [%s] %s", "FAIL", "producer-1", "Disconnected")
    clock.now += SETTLE_S
    o.contact()
    clock.now += SETTLE_S
    gate.log(logging.WARNING, "%s [%s] %s", "GETPID", "producer-1", "Failed to acquire idempotence PID")
    kafka = [(r.levelno, r.getMessage().split(" [")[0]) for r in caplog.records if r.name == "tokenfuse.kafka"]
    assert kafka == [(logging.DEBUG, "FAIL"), (logging.INFO, "GETPID")]  # librdkafka retries it
    assert o.connection_errors == 1


def test_the_log_gate_holds_back_other_lines_from_the_first_failure_on(clock, caplog):
    caplog.set_level(logging.DEBUG, logger="tokenfuse.kafka")
    o = Outage()
    gate = KafkaLogGate(o)
    o.contact()
    clock.now += 1
    gate.log(logging.ERROR, "%s [%s] %s", "FAIL", "producer-1", "Connect to ipv4#127.0.0.1:9092 failed")
    gate.log(logging.WARNING, "%s [%s] %s", "METADATAUPDATE", "producer-1", "new leader-1 not found in cache")
    clock.now += 1
    o.contact()  # the broker answered again before any outage was announced
    gate.log(logging.WARNING, "%s [%s] %s", "METADATAUPDATE", "producer-1", "partition moved")
    kafka = [(r.levelno, r.getMessage().split(" [")[0]) for r in caplog.records if r.name == "tokenfuse.kafka"]
    assert kafka == [(logging.DEBUG, "METADATAUPDATE"), (logging.INFO, "METADATAUPDATE")]
    assert lines(caplog) == []


def test_a_disconnect_notice_holds_back_the_metadata_warnings_that_follow_it(clock, caplog):
    caplog.set_level(logging.DEBUG, logger="tokenfuse.kafka")
    o = Outage()
    gate = KafkaLogGate(o)
    o.contact()
    clock.now += 0.1
    gate.log(logging.INFO, "%s [%s] %s", "FAIL", "producer-1", "Disconnected: connection closed by peer")
    gate.log(logging.WARNING, "%s [%s] %s", "METADATAUPDATE", "producer-1", "new leader-1 not found in cache")
    kafka = [(r.levelno, r.getMessage().split(" [")[0]) for r in caplog.records if r.name == "tokenfuse.kafka"]
    assert kafka == [(logging.DEBUG, "FAIL"), (logging.DEBUG, "METADATAUPDATE")]
    assert o.connection_errors == 0 and lines(caplog) == []
