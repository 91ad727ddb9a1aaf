"""Test helpers shared by the integration tests: producing usage, reading topics to the end."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tokenfuse.budgets.signed import sign_budget
from tokenfuse.control.signing import Signer
from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings


def free_port(span: int = 1) -> int:
    """A free loopback port; with `span` > 1, one whose next span-1 ports are free too (a broker's
    controller and other listeners go there: CI once failed to start a private broker on a taken
    controller port)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        try:
            for offset in range(1, span):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue


def unique_settings(bootstrap: str, tmp_path: Path) -> Settings:
    """Settings with uuid-named topics and consumer group, so tests never share state."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"test-{tag}",
        app_id=f"test-{tag}-worker",
        partitions=2,
        data_dir=tmp_path / "data",
        control_key="test-control-key-" + uuid.uuid4().hex,  # 49 bytes: keys need 32
        budget_keys=f"test-budgets:budget-key-{uuid.uuid4().hex}",
        web_port=0,
        sink_port=free_port(),
    )


def usage_event(agent: str, tokens: int, *, team: str = "search", org: str = "acme", when_ms: int | None = None,
                event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id or str(uuid.uuid4()), "event_time": when_ms or int(time.time() * 1000),
            "org": org, "team": team, "agent": agent, "model": "gpt-4o-mini", "provider": "openai",
            "input_tokens": tokens, "output_tokens": 0, "cost_micro_usd": tokens, **extra}


class UsageProducer:
    def __init__(self, settings: Settings):
        self.topic = settings.topic("usage")
        # Compressed like real runtimes send it: the worker (aiokafka) must decode it.
        self.producer = Producer({**settings.kafka_config, "enable.idempotence": True, "linger.ms": 1,
                                  "compression.type": "zstd"})

    def send(self, event: dict[str, Any]) -> None:
        self.producer.produce(self.topic, key=event["agent"].encode(), value=codec("UsageEvent").encode(event),
                              timestamp=event["event_time"])

    def send_raw(self, key: bytes, value: bytes) -> None:
        self.producer.produce(self.topic, key=key, value=value)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "usage not delivered"


def publish_budget(settings: Settings, *, signer: Signer | None = None, **budget: Any) -> None:
    """Publish a budget signed with the settings' budget key (or `signer`, e.g. a forger's)."""
    record = {"timezone": "UTC", "thresholds": [{"percent": 100, "action": "block"}],
              "updated_at": int(time.time() * 1000), **budget}
    publish_budget_value(settings, budget["id"], codec("Budget").encode(
        sign_budget(record, signer or settings.budget_signer())))


def publish_budget_value(settings: Settings, budget_id: str, value: bytes | None) -> None:
    p = Producer(settings.kafka_config)
    p.produce(settings.topic("budgets"), key=budget_id.encode(), value=value)
    assert p.flush(30) == 0


def read_all(settings: Settings, topic: str, decode: Callable[[bytes], Any], *,
             until: Callable[[list], bool], timeout: float = 30.0) -> list[tuple[bytes, Any, list]]:
    """(key, decoded value, headers) of every committed record of `topic`, polling until
    `until(records)` holds or `timeout` passes (the caller asserts on what came)."""
    consumer = Consumer({**settings.kafka_config, "group.id": f"test-read-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    name = settings.topic(topic)
    parts = consumer.list_topics(name, timeout=10).topics[name].partitions
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in parts])
    records: list[tuple[bytes, Any, list]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(records) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                records.append((msg.key(), decode(msg.value()), msg.headers() or []))
    finally:
        consumer.close()
    return records
