"""The Faust app: two stages joined by a repartition topic.

1. `ingest` (usage topic, keyed by agent), in batches: decode + validate (bad bytes → DLQ with a
   reason header), drop duplicate event_ids, drop late events from budgets (history still has
   them), price, and fold the batch into per-scope, per-second deltas; send one message per
   deltas partition, holding the deltas of the scopes that partition owns.
2. `account` (deltas topic): for each scope in a message, add its deltas to every tracked window
   of the scope's record (scope_state.py), check the budgets on that scope after each delta, send
   an Alert for each threshold crossed and a signed ControlState when the scope's effective state
   changes; write the record once.

Each scope lives in exactly one deltas partition, so totals are exact with any number of workers.
With processing_guarantee=exactly_once, outputs, table changelogs and input offsets commit in one
Kafka transaction per input partition (transactions.py), every `commit_interval_ms`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter, defaultdict
from typing import Any

import faust

from tokenfuse.usage import pricing
from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError, DecodeError
from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.usage.scopes import event_scopes
from tokenfuse.usage.windows import WindowSpec, parse_window
from tokenfuse.worker.engine.rules import BudgetIndex
from tokenfuse.worker.engine.record import FIELDS, current_window, new_record
from tokenfuse.worker.engine.settle import Output, Settler
from tokenfuse.worker.engine.deltas import Delta, DeltaBatch, scope_partition
from tokenfuse.worker.faust_adapter.transactions import (ack_all, commit_gate, process_as, use_source_partition_transactions,
                                            write)
from tokenfuse.usage.validate import validate_usage

log = logging.getLogger(__name__)

BATCH_MAX = 5000
BATCH_WITHIN_S = 0.1
# A batch can hold up to 7 deltas per event (one per scope); chunks of this many (~200 kB of
# JSON) keep every deltas message far below Kafka's 1 MB message limit.
DELTAS_PER_MESSAGE = 2000
# Deltas messages are per-partition batches already; grouping a few more halves table writes
# for busy scopes. The wait bounds the added kill-switch latency.
ACCOUNT_BATCH_MAX = 64
ACCOUNT_BATCH_WITHIN_S = 0.2
EXPIRE_EVERY_MS = 60_000


def by_partition(events: list[Any]) -> dict[int, list[Any]]:
    """A batch's events by input partition, in order."""
    out: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        out[event.message.partition].append(event)
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


def tracked_windows(settings: Settings) -> dict[str, WindowSpec]:
    specs = [parse_window(name.strip()) for name in settings.windows.split(",") if name.strip()]
    return {spec.name: spec for spec in specs}


def build_app(settings: Settings, catalog: "pricing.PriceCatalog | None" = None) -> faust.App:
    """A Faust app for these settings. Topics must exist (tokenfuse.kafka.topics.create_topics)."""
    if settings.control_key is None:
        raise ConfigError("invalid settings:", ["TOKENFUSE_CONTROL_KEY: required to sign control states"])
    key = settings.control_key.get_secret_value().encode()
    catalog = catalog or pricing.PriceCatalog.load()
    partitions = settings.partitions
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker="kafka://" + settings.bootstrap_servers.replace(",", ";"),
        store="memory://",
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=partitions,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=settings.web_port != 0,
        web_bind=settings.web_host, web_host=settings.web_host, web_port=settings.web_port or 6066,
        broker_commit_interval=settings.commit_interval_ms / 1000,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        consumer_auto_offset_reset="earliest",
        # The memory store drops standby data once recovery completes, so standbys would only
        # cost reads; a partition taken over is recovered from its changelog.
        table_standby_replicas=0,
        # A batch's deltas and changelog records leave in few produce requests, not 16 kB ones.
        producer_max_batch_size=1_000_000,
        autodiscover=False,
    )
    use_source_partition_transactions(app, settings.kafka_config)
    usage = app.topic(settings.topic("usage"), key_serializer="raw", value_serializer="raw")
    deltas = app.topic(settings.topic("deltas"), key_serializer="raw", value_serializer="json")
    control = app.topic(settings.topic("control"), key_serializer="raw", value_serializer="raw")
    alerts = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw")
    dlq = app.topic(settings.topic("dlq"), key_serializer="raw", value_serializer="raw")

    stats: Counter[str] = Counter()
    specs = tracked_windows(settings)
    # Idle scope records expire after the longest tracked window has passed (31 days for months).
    idle_ms = max(31 * 86_400_000 if s.unit == "month" else 86_400_000 if s.unit == "day" else s.size_ms
                  for s in specs.values()) + settings.grace_seconds * 1000
    dedupe_ms = settings.dedupe_seconds * 1000
    grace_ms = settings.grace_seconds * 1000

    # Event ids seen, one changelog record per input partition and batch: `<partition>:<offset>`
    # -> [expires_ms, [event ids], newest event time of the partition]. `seen` indexes the ids
    # and `newest` the event times in memory; both are rebuilt from the table after recovery, so
    # duplicates stay duplicates and late events stay late across a restart.
    seen: dict[str, int] = {}
    newest: dict[int, int] = defaultdict(int)
    settler = Settler(specs, stats, key, settings.control_key_id)
    watched = settler.watched  # scopes not in the allow state, re-checked by the sweep
    gate = commit_gate(app)

    def drop_deleted(table: faust.Table) -> None:
        """Earlier versions of the worker sent deletions as JSON null, not as tombstones (see
        transactions.changelog_record): recovered, those keys hold None. Drop them."""
        for k in [k for k, v in table.data.items() if v is None]:
            table.data.pop(k)

    async def forget_seen() -> None:
        drop_deleted(seen_batches)
        seen.clear()  # rebuilt from the recovered table by remember_seen()
        newest.clear()

    seen_batches = app.Table("seen-event-ids", partitions=partitions, on_recover=forget_seen)

    async def watch_recovered() -> None:
        drop_deleted(scopes_table)
        watched.update(k for k, v in scopes_table.items() if v["m"][0] != "allow")

    scopes_table = app.Table("scope-state", partitions=partitions, on_recover=watch_recovered)
    last_expiry: dict[tuple[str, int], int] = defaultdict(int)

    def remember_seen() -> None:
        if not seen:
            for k, (expires, ids, newest_ms) in seen_batches.items():
                seen.update(dict.fromkeys(ids, expires))
                part = int(k.partition(":")[0])
                newest[part] = max(newest[part], newest_ms)

    async def expire(table: faust.Table, partition: int, now: int, stale: Any) -> None:
        """Delete this partition's stale keys, at most once a minute."""
        if now - last_expiry[(table.name, partition)] < EXPIRE_EVERY_MS:
            return
        last_expiry[(table.name, partition)] = now
        for k in [k for k, v in table.items() if stale(k, v)]:
            await write(table, partition, k, None)

    async def ingest_partition(part: int, events: list[Any], now: int) -> None:
        """One input partition's share of a batch, all in that partition's transaction."""
        process_as(events[-1])
        batch = DeltaBatch()
        new_ids: list[str] = []
        for event in events:
            message = event.message
            try:
                usage_event = codec("UsageEvent").decode(event.value)
                validate_usage(usage_event, now)
            except DecodeError as exc:
                stats["dlq"] += 1
                await dlq.send(key=message.key, value=event.value, headers={
                    "reason": exc.reason.encode(),
                    "source": f"{message.topic}/{message.partition}/{message.offset}".encode()})
                continue
            event_id = usage_event["event_id"]
            if event_id in seen:
                stats["duplicates"] += 1
                continue
            seen[event_id] = now + dedupe_ms
            new_ids.append(event_id)
            ts = usage_event["event_time"]
            newest[part] = max(newest[part], ts)
            if ts < newest[part] - grace_ms:
                stats["late_events"] += 1
                continue
            stats["events"] += 1
            batch.add(usage_event, event_scopes(usage_event), catalog.cost(usage_event).micro_usd)
        if new_ids:
            await write(seen_batches, part, f"{part}:{events[-1].message.offset}",
                        [now + dedupe_ms, new_ids, newest[part]])
            await expire(seen_batches, part, now, lambda k, v: k.startswith(f"{part}:") and v[0] < now)
        for destination, items in batch.by_partition(partitions).items():
            for start in range(0, len(items), DELTAS_PER_MESSAGE):
                await deltas.send(value=items[start:start + DELTAS_PER_MESSAGE], partition=destination)

    @app.agent(usage)
    async def ingest(stream: faust.StreamT) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            async with gate:
                remember_seen()
                now = now_ms()
                for part, part_events in by_partition(events).items():
                    await ingest_partition(part, part_events, now)
                await ack_all(stream, events)
            if len(seen) > 2 * stats["events"] + 100_000:
                for event_id in [e for e, expires in seen.items() if expires < now]:
                    del seen[event_id]

    state: dict[str, Any] = {"index": BudgetIndex([]), "version": -1, "feed": None, "waited": False}

    def budget_feed() -> CompactedTopicFollower:
        """Every worker reads all budgets, in a thread of its own."""
        if state["feed"] is None:
            state["feed"] = CompactedTopicFollower(settings, settings.topic("budgets"), codec("Budget").decode)
        return state["feed"]

    @app.task
    async def follow_budgets() -> None:
        """Open the budgets topic as the worker starts, not when the first usage arrives."""
        budget_feed()

    def budget_index() -> BudgetIndex:
        feed = budget_feed()
        if not state["waited"]:  # the first decision waits for the budgets present at start
            state["waited"] = True
            if not feed.wait_caught_up(30):
                log.error("budgets topic not read to its end within 30s; going on with what was read")
        if feed.version != state["version"]:
            state["version"] = feed.version
            index = BudgetIndex(feed.snapshot().values())
            for budget_id, reason in index.rejected.items():
                log.error("budget %s ignored: %s", budget_id, reason)
            for spec in index.windows:
                if spec.name not in specs:
                    if spec.kind != "calendar":
                        log.error("budget window %s is not tracked; add it to TOKENFUSE_WINDOWS", spec.name)
                        continue
                    specs[spec.name] = spec  # calendar windows in a new time zone: tracked from now on
            state["index"] = index
        return state["index"]

    topics = {"alerts": alerts, "control": control}

    async def publish(outputs: list[Output]) -> None:
        for o in outputs:
            await topics[o.topic].send(key=o.key, value=o.value)

    @app.agent(deltas)
    async def account(stream: faust.StreamT) -> None:
        # Batches of deltas messages: a scope that appears in several is written once.
        async for events in stream.take_events(ACCOUNT_BATCH_MAX, within=ACCOUNT_BATCH_WITHIN_S):
            async with gate:
                index, now = budget_index(), now_ms()
                for part, part_events in by_partition(events).items():
                    # Table writes and sends join the transaction of this deltas partition.
                    process_as(part_events[-1])
                    by_scope: dict[str, list[tuple[int, Delta]]] = defaultdict(list)
                    for event in part_events:
                        for item in event.value:
                            delta = Delta.from_json(item)
                            by_scope[delta.scope].append((event.message.offset, delta))
                    outputs: list[Output] = []
                    for scope, offset_deltas in by_scope.items():
                        record = scopes_table.get(scope) or new_record()
                        # A message already in the record (its write committed, its offset not:
                        # a crash between) is not added twice.
                        done = record.get("o", -1)
                        scope_deltas = [d for offset, d in offset_deltas if offset > done]
                        if not scope_deltas:
                            continue
                        record["o"] = offset_deltas[-1][0]
                        if scope == "global":  # every counted event is in it: the account stage's progress
                            stats["settled_events"] += sum(d.events for d in scope_deltas)
                        outputs += settler.settle(scope, record, scope_deltas, index, now)
                        await write(scopes_table, part, scope, record)
                    await publish(outputs)
                    await expire(scopes_table, part, now,
                                 lambda k, v: scope_partition(k, partitions) == part and v["t"] < now - idle_ms
                                 and v["m"][0] == "allow")
                await ack_all(stream, events)

    def owned_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == deltas.get_topic_name()}

    @app.timer(1.0)
    async def sweep() -> None:
        """Without new usage, states still change: a block ends with its window, and a budget
        created, raised or lowered applies to the spend already made. Writes here happen outside
        any stream event, so the changelog partition is given explicitly."""
        if state["feed"] is None:
            return  # the worker is still starting
        version = state["version"]
        index, now = budget_index(), now_ms()
        owned = owned_partitions()
        scopes = list(scopes_table.keys()) if version != state["version"] else list(watched)
        for scope in scopes:
            watched.discard(scope)  # settle() adds it back while it is not allowed
            part = scope_partition(scope, partitions)
            if part not in owned:
                continue
            async with gate:  # a commit never splits a scope's changelog write from its messages
                record = scopes_table.get(scope)
                if record is None:
                    continue
                before = copy.deepcopy((record["e"], record["f"], record["m"]))
                outputs = settler.settle(scope, record, [], index, now)
                if (record["e"], record["f"], record["m"]) != before:
                    await write(scopes_table, part, scope, record)
                await publish(outputs)

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json({"counters": dict(stats), "tracked_windows": sorted(specs)})

    @app.page("/totals")
    async def totals_page(web: Any, request: Any) -> Any:
        scope = request.query.get("scope", "")
        if not scope or scope_partition(scope, partitions) not in owned_partitions():
            return web.json({"error": f"scope {scope!r} is not owned by this worker"}, status=404)
        record = scopes_table.get(scope) or new_record()
        now = now_ms()
        windows = {}
        for name, spec in specs.items():
            w = current_window(record, spec, now)
            windows[name] = {"start": w.start, "end": w.end, **dict(zip(FIELDS, w.totals))}
        return web.json({"scope": scope, "windows": windows})

    return app
