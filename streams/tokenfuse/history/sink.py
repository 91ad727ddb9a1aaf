"""The sink: Kafka topics (usage, alerts, control, budgets, acks, autopilot) → ClickHouse tables, each record once.

- Its own consumer group (`<app_id>-sink`), read_committed (the worker writes alerts and control
  states in transactions), no auto-commit: offsets are committed only after the batch is stored.
- Batches by size and time. How a re-read or re-sent record is stored once: see store.py.
- ClickHouse failing: the batch is retried with backoff and nothing is committed meanwhile; the
  consumer pauses its partitions but keeps polling, so it stays in its group. The worker (budgets,
  kill switch) does not depend on this process at all.
- A rebalance drops the batch in progress: its records are re-read from the committed offsets
  by whoever owns them next, and the store drops what was already stored.
- Malformed usage is skipped here (the worker routes it to the DLQ), counted, logged once per batch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import DecodeError, SignatureError
from tokenfuse.history import rows
from tokenfuse.history.client import History, HistoryUnavailable
from tokenfuse.history.store import Pending, write
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.control.signing import Verifier, verify_record
from tokenfuse.usage.validate import validate_usage

log = logging.getLogger(__name__)

# Fault injection for the recovery tests, never set in production:
#   kill-after-insert   SIGKILL this process after the first insert, before the offset commit
#   fail-inserts:N      the first N store attempts fail as if ClickHouse were down
FAULT_ENV = "TOKENFUSE_SINK_FAULT"
MAX_BACKOFF_S = 30.0


class Sink:
    def __init__(self, settings: Settings, history: History, catalog: PriceCatalog | None = None):
        self.settings, self.history = settings, history
        self.catalog = catalog or PriceCatalog.load()
        self.topics = {settings.topic(t): t for t in ("usage", "alerts", "control", "budgets", "acks", "autopilot")}
        self.verifier = settings.control_verifier()
        self.budget_verifier = settings.budget_verifier()
        self.stats = {"usage": 0, "duplicates": 0, "invalid": 0, "alerts": 0, "control": 0, "budgets": 0, "acks": 0,
                      "autopilot": 0, "insert_retries": 0, "batches": 0}
        # /metrics gauges, updated at each commit (observability/metrics.py SINK_HELP says what they are).
        self.gauges = {"lag_records": 0, "store_delay_seconds": 0.0}
        self.batch: list[Message] = []
        self.generation = 0  # bumped on every partition revocation
        self._faults_left = _injected_failures()
        self.consumer = Consumer({
            **settings.kafka_config, "group.id": f"{settings.app_id}-sink", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            # A crashed sink's partitions go to its restart (or a standby) after 10 s, not 45 s.
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000,
        })

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        self.consumer.subscribe(list(self.topics), on_revoke=self._revoked)
        on_ready()
        oldest = 0.0
        try:
            while not stop.is_set():
                if not self.batch:
                    oldest = time.monotonic()
                self._take(self.consumer.consume(self.settings.sink_batch_rows, timeout=0.2))
                due = self.batch and (len(self.batch) >= self.settings.sink_batch_rows
                                      or time.monotonic() - oldest >= self.settings.sink_batch_seconds)
                if due:
                    self._flush(stop)
        finally:
            self.consumer.close()

    def _take(self, messages: list[Message]) -> None:
        for msg in messages:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", msg.error())
                continue
            self.batch.append(msg)

    def _revoked(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self.batch = []
        self.generation += 1

    def _flush(self, stop: threading.Event) -> None:
        """Store the current batch (retrying while ClickHouse fails), then commit its offsets."""
        taken, generation = self.batch, self.generation
        delay = 0.5
        while not self._try_store(taken):
            self.stats["insert_retries"] += 1
            assignment = self.consumer.assignment()
            self.consumer.pause(assignment)
            deadline = time.monotonic() + delay
            # Poll while waiting: keeps the group membership and serves rebalances.
            while time.monotonic() < deadline and not stop.is_set() and generation == self.generation:
                self._take(self.consumer.consume(self.settings.sink_batch_rows, timeout=0.2))
            self.consumer.resume(assignment)
            if stop.is_set() or generation != self.generation:
                return  # stopping, or the partitions went elsewhere: nothing committed, nothing lost
            delay = min(delay * 2, MAX_BACKOFF_S)
        if os.environ.get(FAULT_ENV) == "kill-after-insert":
            os.kill(os.getpid(), signal.SIGKILL)
        self._commit(taken)
        self.batch = self.batch[len(taken):]

    def _try_store(self, batch: list[Message]) -> bool:
        try:
            if self._faults_left > 0:
                self._faults_left -= 1
                raise HistoryUnavailable("injected failure (TOKENFUSE_SINK_FAULT)")
            self.store(batch)
            return True
        except HistoryUnavailable as exc:
            log.warning("storing %d records failed, will retry: %s", len(batch), exc)
            print(f"sink: ClickHouse unavailable, retrying: {exc}", flush=True)
            return False

    def _commit(self, batch: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for msg in batch:
            last[(msg.topic(), msg.partition())] = max(msg.offset(), last.get((msg.topic(), msg.partition()), -1))
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            # E.g. a rebalance took the partitions: the next owner re-reads and the store dedupes.
            log.warning("offset commit failed (records will be re-read and deduplicated): %s", exc)
        self._measure_lag(batch)

    def _measure_lag(self, batch: list[Message]) -> None:
        """Records behind the partitions' ends (from the high watermarks of the last fetches, no
        broker round trip) and the age of the newest record just stored."""
        newest = max((msg.timestamp()[1] for msg in batch), default=0)
        if newest > 0:
            self.gauges["store_delay_seconds"] = max(0.0, time.time() - newest / 1000)
        lag = 0
        for tp in self.consumer.position(self.consumer.assignment()):
            try:
                high = self.consumer.get_watermark_offsets(tp, cached=True)[1]
            except KafkaException:
                continue
            if tp.offset >= 0 and high >= 0:
                lag += max(0, high - tp.offset)
        self.gauges["lag_records"] = lag

    def store(self, batch: list[Message]) -> None:
        pending = {table.name: Pending(table) for table in rows.TABLES}
        now = int(time.time() * 1000)
        invalid: list[str] = []
        for msg in batch:
            kind = self.topics[msg.topic()]
            try:
                table, row = self._row(kind, msg, now)
            except DecodeError as exc:
                invalid.append(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}: {exc.reason}")
                continue
            pending[table.name].add(row, msg.topic(), msg.partition(), msg.offset())
        if invalid:
            self.stats["invalid"] += len(invalid)
            log.warning("skipped %d malformed record(s) in this batch, first: %s", len(invalid), invalid[0])
        for table, kind in ((rows.USAGE, "usage"), (rows.ALERTS, "alerts"), (rows.CONTROL, "control"),
                            (rows.BUDGETS, "budgets"), (rows.ACKS, "acks"), (rows.DECISIONS, "autopilot")):
            stored, duplicates = write(self.history, pending[table.name])
            self.stats[kind] += stored
            self.stats["duplicates"] += duplicates
        self.stats["batches"] += 1

    def _row(self, kind: str, msg: Message, now: int) -> tuple[rows.Table, list[Any]]:
        if kind == "usage":
            event = codec("UsageEvent").decode(msg.value())
            validate_usage(event, now)
            return rows.USAGE, rows.usage_row(event, self.catalog, msg.partition(), msg.offset())
        if kind == "alerts":
            return rows.ALERTS, rows.alert_row(codec("Alert").decode(msg.value()))
        if kind == "control":
            state = codec("ControlState").decode(msg.value())
            return rows.CONTROL, rows.control_row(state, self._signed(state), msg.partition(), msg.offset())
        if kind == "acks":
            ack = codec("AlertAck").decode(msg.value())
            return rows.ACKS, rows.ack_row(ack, self._signed(ack, "AlertAck"), msg.partition(), msg.offset())
        if kind == "autopilot":
            decision = codec("AutopilotDecision").decode(msg.value())
            signed = self._signed(decision, "AutopilotDecision", self.budget_verifier)
            return rows.DECISIONS, rows.decision_row(decision, signed, msg.partition(), msg.offset())
        if msg.value() is None:  # a bare tombstone deletes nothing (budgets/signed.py)
            raise DecodeError("a budgets tombstone (deletions are signed records)")
        budget = codec("Budget").decode(msg.value())
        return rows.BUDGETS, rows.budget_row(budget, msg.partition(), msg.offset(), now)

    def _signed(self, state: dict[str, Any], schema: str = "ControlState", verifier: Verifier | None = None) -> bool:
        try:
            verify_record(schema, state, verifier or self.verifier, schema)
            return True
        except SignatureError:
            return False


def _injected_failures() -> int:
    fault = os.environ.get(FAULT_ENV, "")
    return int(fault.partition(":")[2] or 0) if fault.startswith("fail-inserts:") else 0

