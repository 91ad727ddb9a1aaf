"""Stage 1, `ingest` (usage topic, keyed by agent), in batches: decode + validate (bad bytes →
DLQ with a reason header), drop duplicate event_ids, keep late events out of budgets (history
still has them), price, and fold the batch into per-scope, per-second deltas; send them to the
deltas partitions that own their scopes, in messages bounded in bytes."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import faust

from tokenfuse.errors import DecodeError
from tokenfuse.kafka.codec import codec
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.usage.scopes import event_scopes
from tokenfuse.usage.validate import validate_usage
from tokenfuse.worker.engine.deltas import DeltaBatch
from tokenfuse.worker.faust_adapter.transactions import ack_all, process_as
from tokenfuse.worker.seen import SeenIds

# A deltas message stays far below Kafka's default 1 MB message limit, whatever the scopes.
DELTAS_MESSAGE_BYTES = 512_000


def by_partition(events: list[Any]) -> dict[int, list[Any]]:
    """A batch's events by input partition, in order."""
    out: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        out[event.message.partition].append(event)
    return out


class Ingest:
    def __init__(self, *, seen: SeenIds, catalog: PriceCatalog, stats: Counter[str], deltas: faust.TopicT,
                 dlq: faust.TopicT, partitions: int, grace_ms: int):
        self.seen = seen
        self.catalog = catalog
        self.stats = stats
        self.deltas = deltas
        self.dlq = dlq
        self.partitions = partitions
        self.grace_ms = grace_ms
        self.decode = codec("UsageEvent").decode

    async def process(self, stream: faust.StreamT, events: list[Any], now: int) -> None:
        """A batch, each input partition's share in that partition's transaction; acked inside
        the caller's commit gate."""
        self.seen.load()
        for part, part_events in by_partition(events).items():
            await self._partition(part, part_events, now)
        await ack_all(stream, events)
        self.seen.compact(now, self.stats["events"])

    async def _partition(self, part: int, events: list[Any], now: int) -> None:
        process_as(events[-1])
        batch = DeltaBatch()
        new_ids: list[str] = []
        seen, stats = self.seen, self.stats
        for event in events:
            try:
                usage = self.decode(event.value)
                validate_usage(usage, now)
                if usage["event_time"] > now + self.grace_ms:
                    raise DecodeError(f"event_time {usage['event_time']} is more than the grace "
                                      f"({self.grace_ms // 1000}s) ahead of the worker's clock ({now})")
            except DecodeError as exc:
                await self._dead_letter(event, exc.reason)
                continue
            if seen.is_duplicate(usage["event_id"], now):
                stats["duplicates"] += 1
                continue
            new_ids.append(usage["event_id"])
            if seen.is_late(part, usage["event_time"], now):
                stats["late_events"] += 1
                continue
            stats["events"] += 1
            batch.add(usage, event_scopes(usage), self.catalog.cost(usage).micro_usd)
        await seen.commit_batch(part, events[-1].message.offset, new_ids, now)
        for destination, value in batch.messages(self.partitions, DELTAS_MESSAGE_BYTES):
            await self.deltas.send(value=value, partition=destination)

    async def _dead_letter(self, event: Any, reason: str) -> None:
        message = event.message
        self.stats["dlq"] += 1
        await self.dlq.send(key=message.key, value=event.value, headers={
            "reason": reason.encode(),
            "source": f"{message.topic}/{message.partition}/{message.offset}".encode()})
