"""The sink: Kafka topics → ClickHouse tables, each record stored once.

- Batches by size and time; commits Kafka offsets only after the insert succeeded.
- A retried batch (a crash between insert and commit, or a failed insert) is made idempotent by
  dropping usage event_ids already stored before inserting; duplicate event_ids (SDK spool
  replays) are dropped the same way. The other tables are ReplacingMergeTrees keyed by their
  record's identity, so a replay collapses.
- ClickHouse failing: the batch is retried with backoff and nothing is committed meanwhile; the
  worker (budgets, kill switch) does not depend on this process at all.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, Message

from tokenfuse.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import DecodeError, SignatureError
from tokenfuse.history import rows
from tokenfuse.history.client import History
from tokenfuse.pricing import PriceCatalog
from tokenfuse.signing import verify
from tokenfuse.worker.validate import validate_usage

log = logging.getLogger(__name__)

# Fault injection for the crash-recovery test: SIGKILL ourselves right after an insert, before
# the commit. Never set in production.
FAULT_ENV = "TOKENFUSE_SINK_FAULT"


class Sink:
    def __init__(self, settings: Settings, history: History, catalog: PriceCatalog | None = None):
        self.settings, self.history = settings, history
        self.catalog = catalog or PriceCatalog.load()
        self.topics = {settings.topic(t): t for t in ("usage", "alerts", "control", "budgets")}
        self.keys = ({settings.control_key_id: settings.control_key.get_secret_value().encode()}
                     if settings.control_key else {})
        self.stats = {"usage": 0, "duplicates": 0, "invalid": 0, "alerts": 0, "control": 0, "budgets": 0,
                      "insert_retries": 0}
        self.consumer = Consumer({
            **settings.kafka_config, "group.id": f"{settings.app_id}-sink", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        })

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        self.consumer.subscribe(list(self.topics))
        on_ready()
        batch: list[Message] = []
        oldest = 0.0
        try:
            while not stop.is_set():
                for msg in self.consumer.consume(self.settings.sink_batch_rows, timeout=0.2):
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("kafka: %s", msg.error())
                        continue
                    if not batch:
                        oldest = time.monotonic()
                    batch.append(msg)
                due = batch and (len(batch) >= self.settings.sink_batch_rows
                                 or time.monotonic() - oldest >= self.settings.sink_batch_seconds)
                if due and self.store_until_done(batch, stop):
                    self.consumer.commit(asynchronous=False)
                    batch = []
        finally:
            self.consumer.close()

    def store_until_done(self, batch: list[Message], stop: threading.Event) -> bool:
        """Store the batch, retrying with backoff while ClickHouse fails; False if stopped first."""
        delay = 0.5
        while not stop.is_set():
            try:
                self.store(batch)
                if os.environ.get(FAULT_ENV) == "kill-after-insert":
                    os.kill(os.getpid(), signal.SIGKILL)
                return True
            except Exception as exc:  # noqa: BLE001 - any ClickHouse failure: keep the batch, retry
                self.stats["insert_retries"] += 1
                log.warning("storing %d records failed (%s); retrying in %.1fs", len(batch),
                            str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        return False

    def store(self, batch: list[Message]) -> None:
        usage: dict[str, list[Any]] = {}
        alerts, control, budgets = [], [], []
        now = int(time.time() * 1000)
        for msg in batch:
            kind = self.topics[msg.topic()]
            try:
                if kind == "usage":
                    event = codec("UsageEvent").decode(msg.value())
                    validate_usage(event, now)
                    usage.setdefault(event["event_id"], rows.usage_row(event, self.catalog, msg.partition(),
                                                                       msg.offset()))
                elif kind == "alerts":
                    alerts.append(rows.alert_row(codec("Alert").decode(msg.value())))
                elif kind == "control":
                    state = codec("ControlState").decode(msg.value())
                    control.append(rows.control_row(state, self._signed(state), msg.partition(), msg.offset()))
                else:
                    budget = None if msg.value() is None else codec("Budget").decode(msg.value())
                    budgets.append(rows.budget_row((msg.key() or b"").decode(), budget, msg.offset(), now))
            except DecodeError:
                self.stats["invalid"] += 1  # the worker routes bad usage to the DLQ; history skips it
        fresh = self._not_stored(usage)
        self.stats["duplicates"] += len(usage) - len(fresh)
        for table, columns, table_rows in (("usage_events", rows.USAGE_COLUMNS, fresh),
                                           ("alerts", rows.ALERT_COLUMNS, alerts),
                                           ("control_changes", rows.CONTROL_COLUMNS, control),
                                           ("budgets_history", rows.BUDGET_COLUMNS, budgets)):
            if table_rows:
                self.history.insert(table, table_rows, columns)
        self.stats["usage"] += len(fresh)
        self.stats["alerts"] += len(alerts)
        self.stats["control"] += len(control)
        self.stats["budgets"] += len(budgets)

    def _not_stored(self, usage: dict[str, list[Any]]) -> list[list[Any]]:
        if not usage:
            return []
        times = [row[1] for row in usage.values()]
        stored = self.history.query(
            "SELECT event_id FROM usage_events WHERE event_time BETWEEN {lo:DateTime64(3)} AND {hi:DateTime64(3)} "
            "AND event_id IN {ids:Array(String)}",
            parameters={"lo": min(times), "hi": max(times), "ids": list(usage)}).result_rows
        known = {row[0] for row in stored}
        return [row for event_id, row in usage.items() if event_id not in known]

    def _signed(self, state: dict[str, Any]) -> bool:
        try:
            verify(state, self.keys)
            return True
        except SignatureError:
            return False
