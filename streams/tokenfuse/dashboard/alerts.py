"""The latest alerts, read from the alerts topic as they come (the Now page's live feed).

The topic is not compacted: at start the feed reads only the last `keep` records of each
partition, then follows. Alerts are deduplicated by alert_id (a replayed alert has the same id).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaError, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.errors import DecodeError
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import watermarks

log = logging.getLogger(__name__)


class Forecasts:
    """The live breach forecast per (budget, scope): the latest `forecast` alert, until a
    `forecast_cleared` for it arrives. Only the window the alert is about counts."""

    CLEARED = ("forecast_cleared", "forecast-cleared")

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], dict[str, Any]] = {}

    def take(self, alert: dict[str, Any]) -> None:
        key = (alert["budget_id"], alert["scope"])
        if alert["kind"] == "forecast":
            self._latest[key] = alert
        elif alert["kind"] in self.CLEARED:
            self._latest.pop(key, None)

    def get(self, budget_id: str, scope: str, window_start: int) -> dict[str, Any] | None:
        alert = self._latest.get((budget_id, scope))
        return alert if alert is not None and alert["window_start"] == window_start else None


class AlertFeed:
    """`latest()` are the newest alerts first; `on_change(alert)` is called from the feed's thread."""

    def __init__(self, settings: Settings, keep: int = 200, on_change: Callable[[dict[str, Any]], None] | None = None):
        self._topic = settings.topic("alerts")
        self._keep, self._on_change = keep, on_change
        self._consumer = Consumer({**settings.kafka_config, "group.id": f"tokenfuse-dashboard-{self._topic}",
                                   "enable.auto.commit": False, "isolation.level": "read_committed"})
        partitions = self._consumer.list_topics(self._topic, timeout=10).topics[self._topic].partitions
        starts = []
        for p in partitions:
            tp = TopicPartition(self._topic, p)
            low, high = watermarks(self._consumer, tp)
            starts.append(TopicPartition(self._topic, p, max(low, high - keep)))
        self._consumer.assign(starts)
        self._alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._forecasts = Forecasts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-feed", daemon=True)
        self._thread.start()

    def latest(self, scope: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            alerts = [a for a in self._alerts.values() if scope is None or a["scope"] == scope]
        alerts.sort(key=lambda a: (a["created_at"], a["alert_id"]), reverse=True)
        return alerts[:limit]

    def forecast(self, budget_id: str, scope: str, window_start: int) -> dict[str, Any] | None:
        """The worker's live breach forecast for a budget and scope in this window: its latest
        `forecast` alert, unless a `forecast_cleared` came after it."""
        with self._lock:
            return self._forecasts.get(budget_id, scope, window_start)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()

    def _run(self) -> None:
        decode = codec("Alert").decode
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("reading %s: %s", self._topic, msg.error())
                continue
            try:
                alert = decode(msg.value())
            except DecodeError as exc:
                log.error("ignoring unreadable alert in %s: %s", self._topic, exc)
                continue
            with self._lock:
                if alert["alert_id"] in self._alerts:
                    continue
                self._alerts[alert["alert_id"]] = alert
                self._forecasts.take(alert)
                while len(self._alerts) > self._keep:
                    self._alerts.popitem(last=False)
            if self._on_change is not None:
                self._on_change(alert)
