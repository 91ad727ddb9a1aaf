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

# Not under "tokenfuse.kafka": roles turn that logger (librdkafka's own lines) down to CRITICAL.
log = logging.getLogger("tokenfuse.follow")

_NOT_READY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART}


class RateLimitedLog:
    """At most one line per `every_s` seconds, saying how many were left out: a stream of forged
    records must not flood the log."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0):
        self.logger, self.every_s = logger, every_s
        self._last = float("-inf")
        self._held = 0

    def error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._held += 1
            return
        held, self._held, self._last = self._held, 0, now
        self.logger.error(message + (f" ({held} more like it left out of the log)" if held else ""), *args)


class CompactedTopicFollower:
    """`snapshot()` is the latest decoded value per key; `version` grows on every change;
    `wait_caught_up()` waits until everything present at start has been read.

    `decode` may refuse a record (DecodeError, SignatureError): it is counted in `rejected`, logged
    (rate-limited) and changes nothing. A tombstone removes its key unless `ignore_tombstones`
    (a tombstone cannot be signed). With `supersedes(new, old)`, a value replaces the held one only
    if it says so (a replayed older version does not). `client_config` adds to or overrides the
    consumer's settings (e.g. the SDK's logger). `on_change(key, value)` is called from the
    follower's thread after each change (value None = removed), for processes that push changes
    on (the dashboard)."""

    def __init__(self, settings: Settings, topic: str, decode: Callable[[bytes], Any], *,
                 ignore_tombstones: bool = False, supersedes: Callable[[Any, Any], bool] | None = None,
                 client_config: dict[str, Any] | None = None,
                 on_change: Callable[[str, Any], None] | None = None):
        self._decode = decode
        self._on_change = on_change
        self._topic = topic
        self._ignore_tombstones = ignore_tombstones
        self._supersedes = supersedes
        self._refusals = RateLimitedLog(log)
        self._first_read_waited = False
        self._consumer = Consumer({
            **settings.kafka_config, **(client_config or {}),
            "group.id": f"tokenfuse-follow-{topic}",  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
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

    def get(self, key: str) -> Any:
        """The latest value of one key (None if none): no copy of the whole view."""
        with self._lock:
            return self._values.get(key)

    def wait_caught_up(self, timeout: float) -> bool:
        return self._caught_up.wait(timeout)

    def wait_first_read(self, timeout: float) -> None:
        """For a reader's first decision: wait once for what the topic held at start; if that
        takes longer than `timeout`, log it and go on with what was read (later calls return
        at once)."""
        if self._first_read_waited:
            return
        self._first_read_waited = True
        if not self.wait_caught_up(timeout):
            log.error("%s not read to its end within %ss; going on with what was read", self._topic, timeout)

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
                elif not self._caught_up.is_set():
                    # At the end: past a final transaction marker too, which no position shows.
                    positions[msg.partition()] = max(positions.get(msg.partition(), 0),
                                                     self._ends.get(msg.partition(), 0))
                    self._check_caught_up(positions)
                continue
            self._apply((msg.key() or b"").decode("utf-8", "replace"), msg.value())
            positions[msg.partition()] = msg.offset() + 1
            if not self._caught_up.is_set():
                self._check_caught_up(positions)

    def _apply(self, key: str, raw: bytes | None) -> None:
        if raw is None:
            if self._ignore_tombstones:
                self.rejected += 1
                self._refusals.error("ignoring a tombstone for %r in %s: deletions must be signed records",
                                     key, self._topic)
                return
            with self._lock:
                self._values.pop(key, None)
                self.version += 1
            self._changed(key, None)
            return
        try:
            value = self._decode(raw)
        except (DecodeError, SignatureError) as exc:
            self.rejected += 1
            self._refusals.error("ignoring record %r in %s: %s", key, self._topic, exc)
            return
        with self._lock:
            if self._supersedes is not None and not self._supersedes(value, self._values.get(key)):
                return
            self._values[key] = value
            self.version += 1
        self._changed(key, value)

    def _changed(self, key: str, value: Any) -> None:
        if self._on_change is not None:
            self._on_change(key, value)


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
