"""Gets usage events from record() to the usage topic without ever making the caller wait.

record() only appends a dict to an in-memory deque (well under a microsecond). A background
thread gives each event its event_id, Avro-encodes it (~10 µs, the bulk of the cost, which is why
it is not done on the caller's thread) and hands it to librdkafka (idempotent, acks=all, lz4,
5 ms linger).

Backpressure, with memory bounded by queue_max_events + kafka_queue_max_messages: when
librdkafka's queue is full the sender waits for acknowledgements (the event it holds is retried
first); when the deque is full too, record() encodes the event and appends it to the disk spool
itself (~20 µs instead of ~2 µs: a caller outrunning the broker is slowed down to disk speed).
The spool also takes events produced while the broker is known to be down, delivery failures, and
at close whatever is still unacknowledged. While the broker is up the sender replays the spool in
the background, a batch per turn before new events, with the original bytes (same event_id).
`flush()` / `close()` report what is still undelivered (FlushResult).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.sdk.outage import KafkaLogGate, Outage
from tokenfuse.sdk.spool import Segment, Spool

log = logging.getLogger(__name__)

_PROBE_EVERY_S = 1.0
_IDLE_WAKE_S = 0.05
_BUSY_WAKE_S = 0.005
_REPLAY_BATCH = 1000
# Python threads share one GIL, and a thread waiting for it can wait up to the switch interval
# (5 ms) while another runs Python code. The sender pauses briefly after every few dozen events of
# work, so an agent thread returning from I/O gets the GIL back within a fraction of a millisecond.
_YIELD_EVERY = 32
_YIELD_S = 0.0001
_DRAIN_BATCH = 5000
_PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


@dataclass(frozen=True)
class FlushResult:
    """What is not delivered yet. True when everything recorded (and spooled) is delivered."""

    in_memory: int  # waiting for the sender, or handed to librdkafka and not acknowledged yet
    on_disk: int  # in the spool directory: a runtime using the same directory delivers them
    dropped: int  # since start: the spool was full, these are lost (and logged)

    @property
    def undelivered(self) -> int:
        return self.in_memory + self.on_disk

    def __bool__(self) -> bool:
        return self.undelivered == 0


class Reporter:
    def __init__(self, settings: Settings, options: FuseOptions, spool_dir, outage: Outage | None = None):
        self.outage = outage or Outage()
        self._topic = settings.topic("usage")
        self._codec = codec("UsageEvent")
        self._max_pending = options.queue_max_events
        self._close_timeout = options.close_timeout_s
        self._producer = Producer({
            **settings.kafka_config,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
            "queue.buffering.max.messages": options.kafka_queue_max_messages,
            "message.timeout.ms": options.delivery_timeout_ms,
            "error_cb": self._on_error,
            "logger": KafkaLogGate(self.outage),
        })
        self.spool = Spool(spool_dir, options.spool_max_bytes)
        self._pending: deque[dict[str, Any]] = deque()
        self._held: tuple[bytes, bytes, int] | None = None  # librdkafka's queue was full: sent first
        self._in_flight = 0  # new events handed to librdkafka, not yet reported (sender thread only)
        self._spool_dir = spool_dir
        self._wake = threading.Event()
        self._closing = False
        self._broker_down = False
        self._last_probe = 0.0
        self._last_busy = 0.0
        self._reports = 0
        self._replaying: Segment | None = None
        self._replay_next = 0
        self._stats_lock = threading.Lock()
        self.stats = {"delivered": 0, "failed": 0, "spooled": 0, "replayed": 0, "invalid": 0}
        self._thread = threading.Thread(target=self._run, name="tokenfuse-reporter", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------------

    def submit(self, event: dict[str, Any]) -> None:
        """Hand an event (without event_id) to the sender. Never blocks on the broker."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            # The sender is far behind: keep the event on disk rather than grow memory.
            self._spool(*self._encode(event))
            return
        # No wake-up signal here: setting an Event takes a lock the sender thread may hold, and
        # the hand-over of that lock and the GIL can stall the caller for milliseconds. The sender
        # looks at the deque every few milliseconds instead.
        pending.append(event)

    def undelivered(self) -> FlushResult:
        in_memory = len(self._pending) + (self._held is not None) + self._in_flight
        return FlushResult(in_memory, self.spool.records(), self.spool.dropped)

    def flush(self, timeout: float) -> FlushResult:
        """Wait up to `timeout` until every submitted event, and every spooled one, is acknowledged
        by the broker; return what is still undelivered. Delivery reports are served by the sender
        thread only, so this just watches it work."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.undelivered()
            if not result.undelivered or time.monotonic() >= deadline:
                return result
            self._wake.set()
            time.sleep(0.005)

    def close(self) -> FlushResult:
        """Deliver what can be within close_timeout_s, spool the rest, stop the sender, and say in
        one log line what is left: after this returns nothing is only in memory."""
        if self._closing:
            return self.undelivered()
        deadline = time.monotonic() + self._close_timeout
        self.flush(self._close_timeout)
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self._producer.flush(max(0.0, deadline - time.monotonic())) > 0:
            # Still unacknowledged: purge makes librdkafka report each one, and the callback spools it.
            self._producer.purge()
            self._producer.flush(1.0)
        self._spool_in_memory()
        if self._replaying is not None:
            self._abandon_replay()
        self.spool.close()
        result = self.undelivered()
        if result.undelivered or result.dropped:
            log.warning("tokenfuse: closing with %d usage events undelivered, kept in the spool %s (a runtime "
                        "using that directory delivers them); %d dropped since start (spool full)",
                        result.on_disk, self._spool_dir, result.dropped)
        else:
            log.info("tokenfuse: closed; every recorded usage event was delivered (%d this run)",
                     self.stats["delivered"] + self.stats["replayed"])
        return result

    def _spool_in_memory(self) -> None:
        if self._held is not None:
            self._spool(*self._held)
            self._held = None
        while self._pending:
            record = self._encode(self._pending.popleft())
            if record[1]:
                self._spool(*record)

    # -- the sender thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            # Tick fast while there is traffic; after a quiet second, slower (an idle runtime
            # costs next to nothing, and the first event after a pause waits at most _IDLE_WAKE_S).
            busy = self._pending or len(self._producer) or time.monotonic() - self._last_busy < 1.0
            self._wake.wait(_BUSY_WAKE_S if busy else _IDLE_WAKE_S)
            self._wake.clear()
            if self._pending:
                self._last_busy = time.monotonic()
            try:
                if self._broker_down:
                    self._probe()
                elif not self._closing and (self._replaying is not None or self.spool.pending()):
                    self._replay_some()  # older events first, a batch per turn
            except OSError as exc:  # the spool's disk: keep sending what can be sent
                log.error("tokenfuse: spool replay failed: %s", exc)
            self._drain()
            self._producer.poll(0)
            if self._closing:
                return

    def _drain(self) -> None:
        """Hand new events to librdkafka; stop at a full queue (backpressure), holding that event."""
        pending, produced = self._pending, 0
        while (self._held is not None or pending) and produced < _DRAIN_BATCH:
            record, self._held = self._held or self._encode(pending.popleft()), None
            key, value, ts = record
            if not value:
                continue
            if self._broker_down:
                self._spool(key, value, ts)
                continue
            try:
                self._producer.produce(self._topic, value, key, on_delivery=self._on_delivery, timestamp=ts)
            except BufferError:
                self._held = record
                return
            except KafkaException:  # the producer failed for good
                self._spool(key, value, ts)
                continue
            self._in_flight += 1
            produced += 1
            if produced % _YIELD_EVERY == 0:
                self._producer.poll(0)
                time.sleep(_YIELD_S)
        if pending:
            self._wake.set()  # more to send: come back without waiting

    def _encode(self, event: dict[str, Any]) -> tuple[bytes, bytes, int]:
        event["event_id"] = str(uuid.uuid4())
        try:
            return event["agent"].encode(), self._codec.encode(event), event["event_time"]
        except Exception as exc:  # a caller passed a value of the wrong type: nothing to send or spool
            self._count("invalid")
            log.error("tokenfuse: usage event not recorded, it does not fit the UsageEvent schema: %s", exc)
            return b"", b"", 0

    def _spool(self, key: bytes, value: bytes, ts: int) -> None:
        if self.spool.append(key, value, ts):
            self._count("spooled")

    def _on_delivery(self, err, msg) -> None:
        self._in_flight -= 1
        self._settle(err, msg)

    def _settle(self, err, msg) -> None:
        # poll() serves every queued report in one call (thousands when a timeout hits a backlog).
        self._reports += 1
        if self._reports % _YIELD_EVERY == 0:
            time.sleep(_YIELD_S)
        if err is None:
            self._count("delivered")
            self._broker_down = False
            self.outage.contact()
            return
        self._count("failed")
        if err.code() not in _PURGED:  # purged at close: not a sign the broker is down
            self._mark_down(err)
        self._spool(msg.key(), msg.value(), msg.timestamp()[1])

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka lost the brokers: new events go straight to the spool until a probe or a
        delivery succeeds. Events already handed to librdkafka stay there: it retries them
        idempotently (the broker drops repeats), which a spooled copy could not guarantee for an
        event that was in flight when the connection died."""
        if err.fatal():
            log.error("tokenfuse: the usage producer failed: %s", err)
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._mark_down(err)

    def _mark_down(self, err: KafkaError) -> None:
        self.outage.trouble(err.str())  # logs once per outage
        self._broker_down = True

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self.stats[what] += 1

    def _probe(self) -> None:
        """While the broker is down, ask it for metadata once a second; on an answer, resume."""
        now = time.monotonic()
        if now - self._last_probe < _PROBE_EVERY_S:
            return
        self._last_probe = now
        try:
            self._producer.list_topics(self._topic, timeout=0.5)
        except KafkaException:
            return
        self.outage.contact()  # logs once per outage
        self._broker_down = False

    # -- replay --------------------------------------------------------------------------------------

    def _replay_some(self) -> None:
        if self._replaying is None:
            self._replaying, self._replay_next = self.spool.claim(), 0
            if self._replaying is None:
                return
        segment = self._replaying
        stop = min(len(segment.records), self._replay_next + _REPLAY_BATCH)
        while self._replay_next < stop and not self._broker_down:
            key, value, ts = segment.records[self._replay_next]
            try:
                self._producer.produce(self._topic, value, key, timestamp=ts,
                                       on_delivery=partial(self._on_replay_delivery, segment))
            except (BufferError, KafkaException):
                return
            self._replay_next += 1
            if self._replay_next % _YIELD_EVERY == 0:
                time.sleep(_YIELD_S)
        if self._replay_next >= len(segment.records):
            segment.records = []
            self._replaying = None
            if segment.outstanding == 0:
                self.spool.release(segment)
        else:
            self._wake.set()  # more to send: come back without waiting

    def _on_replay_delivery(self, segment: Segment, err, msg) -> None:
        if err is None:
            self._count("replayed")
        self._settle(err, msg)  # a failure goes back into the spool
        segment.outstanding -= 1
        if segment.outstanding == 0 and segment is not self._replaying:
            self.spool.release(segment)

    def _abandon_replay(self) -> None:
        """At close: records of the segment not sent yet are spooled anew, so it can go."""
        segment = self._replaying
        for key, value, ts in segment.records[self._replay_next:]:
            self._spool(key, value, ts)
        segment.outstanding -= len(segment.records) - self._replay_next
        self._replaying = None
        if segment.outstanding == 0:
            self.spool.release(segment)
