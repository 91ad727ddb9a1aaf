"""Publish one record and wait until the broker has it: what operators' commands need."""

from __future__ import annotations

from confluent_kafka import KafkaException, Producer

from tokenfuse.config import Settings
from tokenfuse.errors import BrokerUnavailable
from tokenfuse.kafka.topics import ensure_broker


def produce_and_wait(settings: Settings, topic: str, key: bytes, value: bytes, timeout: float = 15.0) -> None:
    """Write one keyed record with an idempotent producer; BrokerUnavailable if not delivered."""
    ensure_broker(settings)
    producer = Producer({**settings.producer_config, "enable.idempotence": True})
    errors: list[str] = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda err, _msg: err and errors.append(str(err)))
    try:
        remaining = producer.flush(timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(f"could not publish to {topic}: {exc}") from None
    if remaining or errors:
        raise BrokerUnavailable(f"could not publish to {topic}: " + ("; ".join(errors) or "timed out"))
