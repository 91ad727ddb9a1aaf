"""Helpers for the SDK tests: read the usage topic to its end, publish control states."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.control.signing import encode_signed


def now_ms() -> int:
    return int(time.time() * 1000)


def read_usage_to_end(settings: Settings) -> list[dict[str, Any]]:
    """Every committed UsageEvent in the usage topic up to its end as of now (call after a flush)."""
    consumer = Consumer({**settings.kafka_config, "group.id": f"test-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    name = settings.topic("usage")
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
    events, at_end, deadline = [], set(), time.monotonic() + 60
    decode = codec("UsageEvent").decode
    try:
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                at_end.add(msg.partition())
            else:
                events.append(decode(msg.value()))
    finally:
        consumer.close()
    assert len(at_end) == len(partitions), "did not reach the end of the usage topic"
    return events


_VERSIONS = itertools.count(1)


def control_state(scope: str, state: str = "block", **fields: Any) -> dict[str, Any]:
    """A state whose version outranks every one made before it in this test run."""
    return {"scope": scope, "state": state, "reason": f"test {state}", "issued_at": now_ms(),
            "version": now_ms() * 1000 + next(_VERSIONS) % 1000,
            "budget_id": "test-budget", "spent": 150, "limit": 100, **fields}


def publish_control(settings: Settings, scope: str, value: bytes | None) -> None:
    producer = Producer(settings.kafka_config)
    producer.produce(settings.topic("control"), key=scope.encode(), value=value)
    assert producer.flush(30) == 0


def publish_signed(settings: Settings, scope: str, state: str = "block", **fields: Any) -> dict[str, Any]:
    record = control_state(scope, state, **fields)
    publish_control(settings, scope, encode_signed(record, settings.control_signer()))
    return record
