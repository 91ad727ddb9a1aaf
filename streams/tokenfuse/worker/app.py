"""The Faust app: two stages joined by a repartition topic, wired here.

1. `ingest` (usage topic → deltas topic): ingest.py, with dedupe and lateness in seen.py.
2. `account` (deltas topic → alerts, control): account.py, settling scopes with engine/.
3. A one-second sweep (account.py) and the budgets feed (budget_feed.py).

Both stages take each fetch's messages of their topic as one batch (faust_adapter/consumer.py,
consume_in_batches), not one Faust event at a time. With processing_guarantee=exactly_once,
outputs, table changelogs and input offsets commit in one Kafka transaction per input partition
(faust_adapter/), every `commit_interval_ms`. A batch, its acks and a commit exclude each other
(the commit gate).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import faust

from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.kafka.security import faust_app_options
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.usage.windows import WindowSpec, parse_window
from tokenfuse.worker import faust_adapter
from tokenfuse.worker.account import Account
from tokenfuse.worker.ack_feed import AckFeed
from tokenfuse.worker.budget_feed import BudgetFeed
from tokenfuse.worker.engine.plugins import ForecastDetector, LoopDetector, SpikeDetector
from tokenfuse.worker.control_view import ControlView
from tokenfuse.worker.engine.record import ScopeRecord
from tokenfuse.worker.engine.settle import Settler
from tokenfuse.worker.faust_adapter.consumer import consume_in_batches
from tokenfuse.worker.faust_adapter.tables import record_table
from tokenfuse.worker.faust_adapter.transactions import commit_gate
from tokenfuse.worker.ingest import Ingest
from tokenfuse.worker.leases import POLL_EVERY_S, LeaseDesk
from tokenfuse.worker.readiness import Readiness
from tokenfuse.worker.seen import SeenIds
from tokenfuse.worker.status import StatusBeacon
from tokenfuse.worker.web import add_pages



def now_ms() -> int:
    return int(time.time() * 1000)


def tracked_windows(settings: Settings) -> dict[str, WindowSpec]:
    specs = [parse_window(name.strip()) for name in settings.windows.split(",") if name.strip()]
    return {spec.name: spec for spec in specs}


def faust_app(settings: Settings) -> faust.App:
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
        # Faust's own pages (/router, /table, /graph, stats at /) would show table contents to
        # anyone who can reach the port: off. Ours are in web.py.
        web_router_enabled=False, web_tables_enabled=False, web_graph_enabled=False, web_stats_enabled=False,
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
        **faust_app_options(settings),
    )
    faust_adapter.install(app, settings.kafka_config)
    return app


def build_app(settings: Settings, catalog: PriceCatalog | None = None) -> faust.App:
    """A Faust app for these settings. Topics must exist (tokenfuse.kafka.topics.create_topics)."""
    require(settings, "worker")
    app = faust_app(settings)
    partitions = settings.partitions
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    usage, deltas = app.topic(settings.topic("usage"), **raw), app.topic(settings.topic("deltas"), **raw)
    outputs = {name: app.topic(settings.topic(name), **raw) for name in ("alerts", "control")}

    stats: Counter[str] = Counter()
    specs = tracked_windows(settings)
    feed = BudgetFeed(settings, specs, stats)
    seen_table = app.Table("seen-event-ids", partitions=partitions)
    seen = SeenIds(seen_table, settings.dedupe_seconds * 1000, settings.grace_seconds * 1000)
    seen_table.on_recover(seen.on_recover)
    ingest_stage = Ingest(seen=seen, catalog=catalog or PriceCatalog.load(), stats=stats, partitions=partitions,
                          grace_ms=settings.grace_seconds * 1000, deltas=deltas,
                          dlq=app.topic(settings.topic("dlq"), **raw))
    scopes_table = record_table(app, "scope-state", partitions, ScopeRecord.from_json)
    acks = AckFeed(settings)
    forecasts = ForecastDetector(acks)
    detectors = [forecasts, LoopDetector(acks), SpikeDetector(acks)] if settings.detectors else []
    control_view = ControlView(settings)
    settler = Settler(specs, stats, settings.control_signer(), detectors, control=control_view)

    def owned_of(topic: str) -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

    def owned() -> set[int]:
        return owned_of(deltas.get_topic_name())

    def idle_ms() -> int:
        """Idle scope records expire after the longest tracked window has passed."""
        return max(spec.horizon_ms for spec in specs.values()) + settings.grace_seconds * 1000

    account_stage = Account(table=scopes_table, settler=settler, feed=feed, stats=stats, outputs=outputs,
                            partitions=partitions, idle_ms=idle_ms, owned=owned, forecasts=forecasts)
    scopes_table.on_recover(account_stage.on_recover)
    gate = commit_gate(app)

    async def ingest(messages: list[Any]) -> None:
        async with gate:
            await ingest_stage.process(app, messages, now_ms())

    async def account(messages: list[Any]) -> None:
        async with gate:
            await account_stage.process(app, messages, now_ms())

    consume_in_batches(app, usage, ingest)
    consume_in_batches(app, deltas, account)

    @app.task
    async def follow_budgets() -> None:
        feed.start()
        acks.start()
        control_view.start()

    @app.timer(1.0)
    async def sweep() -> None:
        if not feed.started:
            return  # the worker is still starting
        now = now_ms()
        for scope in account_stage.scopes_to_sweep():
            async with gate:  # a commit never splits a scope's changelog write from its messages
                await account_stage.sweep_scope(scope, now)

    readiness = Readiness(settings, feed, control_view, owned=owned_of, recovered=lambda: bool(
        app.tables.recovery.completed.is_set() and owned_of(usage.get_topic_name())))

    @app.timer(0.5)
    async def become_ready() -> None:
        await readiness.check()

    beacon = StatusBeacon(settings, owned_of, lambda: readiness.ready)

    @app.timer(1.0)
    async def heartbeat() -> None:  # backlog awareness: runtimes follow it (worker/status.py)
        await beacon.beat(now_ms())

    desk = LeaseDesk(settings, feed, lambda scope: scopes_table.data.get(scope), owned, lambda: readiness.ready)

    @app.task
    async def grant_leases() -> None:  # leases on shared scopes (worker/leases.py)
        while True:
            await desk.step(now_ms())
            await asyncio.sleep(POLL_EVERY_S)

    add_pages(app, stats, specs, account_stage, partitions, settings, readiness)
    return app
