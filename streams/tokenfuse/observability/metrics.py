"""Metric definitions every role uses, so names stay consistent (docs/metrics.md lists them).

Roles that already keep plain counters (the worker's `stats` Counter, the sink's `stats` dict)
expose them through `render()` / `CountersCollector`: the counters stay the one source of truth
and nothing is counted twice. The notifier, which is new, uses prometheus-client metrics directly
(`NotifierMetrics`). Each process gets its own CollectorRegistry, never the global one, so tests
can run several roles in one process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

Numbers = Mapping[str, "int | float"]
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(prefix: str, key: str) -> str:
    """`tokenfuse_worker` + `late_events` -> `tokenfuse_worker_late_events` (invalid chars -> _)."""
    return _INVALID.sub("_", f"{prefix}_{key}")


class CountersCollector(Collector):
    """Exposes a live mapping of numbers: keys in `gauges` as gauges, the rest as counters
    (`<prefix>_<key>_total`). `read` is called at every scrape, so the values are current."""

    def __init__(self, read: Callable[[], Numbers], prefix: str, gauges: Iterable[str] = (),
                 help_texts: Mapping[str, str] | None = None):
        self._read, self._prefix = read, prefix
        self._gauges = frozenset(gauges)
        self._help = dict(help_texts or {})

    def collect(self) -> Iterator[Metric]:
        for key, number in sorted(self._read().items()):
            name = metric_name(self._prefix, key)
            text = self._help.get(key, f"{key} ({self._prefix})")
            if key in self._gauges:
                yield GaugeMetricFamily(name, text, value=float(number))
            else:
                yield CounterMetricFamily(name, text, value=float(number))


def render(counters: Numbers, prefix: str, gauges: Iterable[str] = (),
           help_texts: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition of `counters` and its content type, for a role's own web
    server (the worker's Faust web page, the dashboard): `body, ctype = render(stats, "tokenfuse_worker")`."""
    registry = CollectorRegistry(auto_describe=False)
    snapshot = dict(counters)
    registry.register(CountersCollector(lambda: snapshot, prefix, gauges, help_texts))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def render_registry(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST


WORKER_HELP = {
    "events": "usage events ingested (valid, not duplicate)",
    "duplicates": "usage events dropped as a repeated event_id",
    "late_events": "events later than the grace period: kept in history, not in budgets",
    "dlq": "records sent to the DLQ (undecodable, invalid)",
    "alerts": "alerts published", "control_changes": "control states published (kill-switch decisions)",
    "settled_events": "events folded into the totals (the second stage)",
    "evicted_window_events": "events in windows dropped from memory after they ended",
    "settle_lag_events": "events ingested but not yet in the totals (events - settled_events)",
}


def render_worker(stats: Numbers) -> tuple[bytes, str]:
    """The worker's /metrics from its `stats` Counter, with the ingest-to-settle lag as a gauge."""
    counters = dict(stats)
    counters["settle_lag_events"] = max(0, counters.get("events", 0) - counters.get("settled_events", 0))
    return render(counters, "tokenfuse_worker", ("settle_lag_events",), WORKER_HELP)


SINK_GAUGES = ("lag_records", "store_delay_seconds")
SINK_HELP = {
    "usage": "usage events stored in ClickHouse",
    "alerts": "alerts stored", "control": "control states stored", "budgets": "budget versions stored",
    "duplicates": "records dropped because ClickHouse already held them",
    "invalid": "malformed records skipped (the worker sends them to the DLQ)",
    "insert_retries": "failed ClickHouse inserts, retried with backoff",
    "batches": "batches stored and committed",
    "lag_records": "records in the sink's partitions not yet stored (high watermark - position)",
    "store_delay_seconds": "age of the newest record of the last stored batch when it was committed",
}


def render_sink(stats: Numbers, gauges: Numbers) -> tuple[bytes, str]:
    """The sink's /metrics (served by its SQL endpoint, history/sql.py)."""
    return render({**stats, **gauges}, "tokenfuse_sink", SINK_GAUGES, SINK_HELP)


@dataclass(frozen=True)
class NotifierMetrics:
    """The notifier's metrics, in a registry of its own."""

    registry: CollectorRegistry
    transitions: Counter
    skipped: Counter
    deliveries: Counter
    failures: Counter
    dead_letters: Counter
    channel_disabled: Gauge
    pending: Gauge

    @classmethod
    def create(cls) -> "NotifierMetrics":
        r = CollectorRegistry()
        return cls(
            registry=r,
            transitions=Counter("tokenfuse_notify_transitions", "transitions read (fired, cleared, blocked, "
                                "released)", ["event"], registry=r),
            skipped=Counter("tokenfuse_notify_skipped", "records that notify nobody, by reason "
                            "(duplicate, stale, no_transition, unsigned, undecodable, unrouted)", ["reason"],
                            registry=r),
            deliveries=Counter("tokenfuse_notify_deliveries", "messages delivered", ["channel"], registry=r),
            failures=Counter("tokenfuse_notify_failures", "failed delivery attempts (each retry counts)",
                             ["channel"], registry=r),
            dead_letters=Counter("tokenfuse_notify_dead_letters", "messages given up on and written to "
                                 "<prefix>.notify-dlq", ["channel"], registry=r),
            channel_disabled=Gauge("tokenfuse_notify_channel_disabled", "1 when the channel was disabled "
                                   "after repeated failed deliveries", ["channel"], registry=r),
            pending=Gauge("tokenfuse_notify_pending", "messages waiting for delivery", registry=r),
        )
