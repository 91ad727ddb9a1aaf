"""The Faust app: two stages joined by a repartition topic.

1. `ingest` (usage topic, keyed by agent): decode + validate (bad bytes → DLQ with a reason
   header), drop duplicate event_ids (a tumbling table keyed by event_id, by event time), drop
   late events from budgets (history still has them), price, and fold the batch into per-scope,
   per-second deltas sent to the deltas topic keyed by scope.
2. `account` (deltas topic, keyed by scope): add each delta to the totals of every tracked window
   of its scope, check the budgets on that scope, send an Alert for each threshold crossed and a
   signed ControlState when the scope's effective state changes.

Stage 2 owns each scope in exactly one partition, so totals are exact with any number of workers.
With processing_guarantee=exactly_once, outputs, table changelogs and offsets commit in Kafka
transactions every `commit_interval_ms`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from typing import Any

import faust

from tokenfuse.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError, DecodeError
from tokenfuse.follow import CompactedTopicFollower
from tokenfuse import pricing
from tokenfuse.scopes import event_scopes
from tokenfuse.signing import encode_signed
from tokenfuse.windows import parse_window
from tokenfuse.worker.decisions import control_state, evaluate
from tokenfuse.worker.engine import BudgetIndex, effective
from tokenfuse.worker.totals import Delta, DeltaBatch, Totals
from tokenfuse.worker.trackers import CalendarTracker, FaustWindowTracker, Tracker
from tokenfuse.worker.validate import validate_usage

log = logging.getLogger(__name__)

BATCH_MAX = 2000
BATCH_WITHIN_S = 0.05


def now_ms() -> int:
    return int(time.time() * 1000)


def build_app(settings: Settings, catalog: "pricing.PriceCatalog | None" = None) -> faust.App:
    """A Faust app for these settings. Topics must exist (tokenfuse.topics.create_topics)."""
    if settings.control_key is None:
        raise ConfigError("invalid settings:", ["TOKENFUSE_CONTROL_KEY: required to sign control states"])
    key = settings.control_key.get_secret_value().encode()
    catalog = catalog or pricing.PriceCatalog.load()
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker="kafka://" + settings.bootstrap_servers.replace(",", ";"),
        store="memory://",
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=settings.web_port != 0,
        web_bind=settings.web_host, web_host=settings.web_host, web_port=settings.web_port or 6066,
        broker_commit_interval=settings.commit_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        table_cleanup_interval=10.0,
    )
    usage = app.topic(settings.topic("usage"), key_serializer="raw", value_serializer="raw")
    deltas = app.topic(settings.topic("deltas"), key_serializer="raw", value_serializer="json")
    control = app.topic(settings.topic("control"), key_serializer="raw", value_serializer="raw")
    alerts = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw")
    dlq = app.topic(settings.topic("dlq"), key_serializer="raw", value_serializer="raw")

    seen = app.Table("seen-event-ids", default=int, partitions=settings.partitions).tumbling(
        settings.dedupe_seconds, expires=settings.dedupe_seconds)
    scopes_state = app.Table("enforcement", default=dict, partitions=settings.partitions)
    calendar = app.Table("totals-calendar", default=Totals, value_type=Totals, partitions=settings.partitions)

    trackers: dict[str, Tracker] = {}
    for name in [w.strip() for w in settings.windows.split(",") if w.strip()]:
        spec = parse_window(name)
        trackers[spec.name] = (CalendarTracker(calendar, spec) if spec.kind == "calendar"
                               else FaustWindowTracker(app, spec, settings.grace_seconds, settings.partitions))
    stats: Counter[str] = Counter()
    state: dict[str, Any] = {"index": BudgetIndex([]), "version": -1, "feed": None}

    def budget_index() -> BudgetIndex:
        feed = state["feed"]
        if feed is None:
            # Every worker reads all budgets. Created on first use, inside the running worker
            # (a thread); the first delta waits until the budgets present at start are read.
            feed = state["feed"] = CompactedTopicFollower(settings, settings.topic("budgets"),
                                                          codec("Budget").decode)
            if not feed.wait_caught_up(30):
                log.error("budgets topic not read to its end within 30s; going on with what was read")
        if feed.version != state["version"]:
            state["version"] = feed.version
            index = BudgetIndex(feed.snapshot().values())
            for budget_id, reason in index.rejected.items():
                log.error("budget %s ignored: %s", budget_id, reason)
            for spec in index.windows:
                if spec.name not in trackers:
                    if spec.kind != "calendar":
                        log.error("budget window %s is not tracked; add it to TOKENFUSE_WINDOWS", spec.name)
                        continue
                    trackers[spec.name] = CalendarTracker(calendar, spec)
            state["index"] = index
        return state["index"]

    stream_time: dict[int, int] = defaultdict(int)

    @app.agent(usage)
    async def ingest(stream: faust.StreamT) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            batch = DeltaBatch()
            for event in events:
                message = event.message
                try:
                    usage_event = codec("UsageEvent").decode(event.value)
                    validate_usage(usage_event, now_ms())
                except DecodeError as exc:
                    stats["dlq"] += 1
                    await dlq.send(key=message.key, value=event.value,
                                   headers={"reason": exc.reason.encode(), "source": (
                                       f"{message.topic}/{message.partition}/{message.offset}").encode()})
                    continue
                # Table writes go to the changelog partition of the current event: make it this one.
                stream._set_current_event(event)
                window = seen[usage_event["event_id"]]
                if window.current():
                    stats["duplicates"] += 1
                    continue
                seen[usage_event["event_id"]] = 1
                ts = usage_event["event_time"]
                part = message.partition
                stream_time[part] = max(stream_time[part], ts)
                if ts < stream_time[part] - settings.grace_seconds * 1000:
                    stats["late_events"] += 1
                    continue
                stats["events"] += 1
                batch.add(usage_event, event_scopes(usage_event), catalog.cost(usage_event).micro_usd)
            for delta in batch.deltas.values():
                await deltas.send(key=delta.scope.encode(), value=delta.to_json(),
                                  timestamp=delta.second_ms / 1000)

    @app.agent(deltas)
    async def account(stream: faust.StreamT) -> None:
        async for raw in stream:
            delta = Delta.from_json(raw)
            index = budget_index()
            now = now_ms()
            record = scopes_state[delta.scope]
            entries = dict(record.get("entries", {}))
            applicable = index.for_scope(delta.scope)
            for tracker in trackers.values():
                hit = tracker.apply(delta)
                fired_before = dict(hit.totals.fired)
                for budget in (b for b in applicable if b.window.name == tracker.spec.name):
                    new_alerts, entries[budget.id] = evaluate(
                        budget, delta.scope, hit.totals, hit.start_ms, hit.end_ms, delta.last_event_id, now)
                    for alert in new_alerts:
                        stats["alerts"] += 1
                        await alerts.send(key=delta.scope.encode(), value=codec("Alert").encode(alert))
                if hit.totals.fired != fired_before:
                    tracker.save(hit.key, hit.totals)
            live = {k: e for k, e in entries.items() if e["until"] > now}
            chosen = effective(live, now)
            emitted = [chosen["state"], chosen["budget_id"], chosen["until"]] if chosen else ["allow", None, None]
            if emitted != record.get("emitted", ["allow", None, None]):
                stats["control_changes"] += 1
                await control.send(key=delta.scope.encode(), value=encode_signed(
                    control_state(delta.scope, chosen, now), key, settings.control_key_id))
            if live != record.get("entries", {}) or emitted != record.get("emitted"):
                scopes_state[delta.scope] = {"entries": live, "emitted": emitted}

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json({"counters": dict(stats), "tracked_windows": sorted(trackers)})

    app.tokenfuse_stats = stats  # type: ignore[attr-defined]
    return app
