"""Follow a compacted topic from its beginning: the latest value per key, kept current by a
background thread. Budgets (worker) use it; any process that needs a table-like view of a
compacted topic can.

Why not a Faust GlobalTable: with faust-streaming 0.15.3 a GlobalTable whose changelog is our
budgets topic stalls the consumer group at partition assignment (measured here on Kafka 4.4).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.errors import DecodeError, SignatureError

log = logging.getLogger(__name__)

_NOT_READY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART}


class CompactedTopicFollower:
    """`snapshot()` is the latest decoded value per key (tombstones remove); `version` grows on
    every change; `wait_caught_up()` waits until everything present at start has been read.
    `decode` may raise DecodeError or SignatureError (a forged control state): the record is
    skipped, the key keeps its last good value. `on_change(key, value)` is called from the
    follower's thread after each change (value None = removed), for processes that push
    changes on (the dashboard)."""

    def __init__(self, settings: Settings, topic: str, decode: Callable[[bytes], Any],
                 on_change: Callable[[str, Any], None] | None = None):
        self._decode = decode
        self._on_change = on_change
        self._topic = topic
        self._consumer = Consumer({
            **settings.kafka_config,
            "group.id": f"tokenfuse-follow-{topic}",  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        })
        meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        self._ends = {p.partition: watermarks(self._consumer, p)[1] for p in self._partitions}
        self._consumer.assign(self._partitions)
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self.version = 0
        self.rejected = 0
        self._check_caught_up({})
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)
        self._thread.start()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def wait_caught_up(self, timeout: float) -> bool:
        return self._caught_up.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()

    def _check_caught_up(self, positions: dict[int, int]) -> None:
        if all(positions.get(p, 0) >= end for p, end in self._ends.items()):
            self._caught_up.set()

    def _positions(self) -> dict[int, int]:
        # The consumer's position, not the last record's offset + 1: a topic written in
        # transactions ends with a commit marker that is never delivered as a record.
        return {tp.partition: tp.offset for tp in self._consumer.position(
            [TopicPartition(self._topic, p) for p in self._ends])}

    def _run(self) -> None:
        positions: dict[int, int] = {}
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None:
                if not self._caught_up.is_set():
                    self._check_caught_up(self._positions())
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("reading %s: %s", self._topic, msg.error())
                continue
            key = (msg.key() or b"").decode("utf-8", "replace")
            try:
                value = None if msg.value() is None else self._decode(msg.value())
            except (DecodeError, SignatureError) as exc:
                self.rejected += 1
                log.error("ignoring unreadable record %r in %s: %s", key, self._topic, exc)
            else:
                with self._lock:
                    if value is None:
                        self._values.pop(key, None)
                    else:
                        self._values[key] = value
                    self.version += 1
                if self._on_change is not None:
                    self._on_change(key, value)
            positions[msg.partition()] = msg.offset() + 1
            if not self._caught_up.is_set():
                self._check_caught_up(positions)


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float = 15.0) -> tuple[int, int]:
    """(low, high) offsets of a partition. Right after a topic is created the broker may answer
    "not leader" for a moment: retried until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(interval)
    return True
