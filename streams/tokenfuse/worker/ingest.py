"""Stage 1, `ingest` (usage topic, keyed by agent), in batches: decode + validate (bad bytes →
DLQ with a reason header), drop duplicate event_ids, keep late events out of budgets (history
still has them), price, and fold the batch into per-scope, per-second deltas; send them to the
deltas partitions that own their scopes, in messages bounded in bytes.

`Ingest.fold` is the stage without Faust (unit-tested with plain records); `Ingest.process`
sends what it returns, in the transaction of the input partition.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import faust

from tokenfuse.errors import DecodeError
from tokenfuse.kafka.codec import codec
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.usage.scopes import event_scopes
from tokenfuse.usage.validate import validate_usage
from tokenfuse.worker.engine.deltas import DeltaBatch
from tokenfuse.worker.faust_adapter.tables import write
from tokenfuse.worker.faust_adapter.transactions import ack_all, process_as
from tokenfuse.worker.seen import SeenIds

# A deltas message stays far below Kafka's default 1 MB message limit, whatever the scopes.
DELTAS_MESSAGE_BYTES = 512_000


class Record(NamedTuple):
    """An input record as the stage sees it: the fields of a Faust message it reads (a test
    builds these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class Folded:
    """What one input partition's share of a batch gives: to send, in its transaction."""

    dead_letters: list[tuple[Record, str]] = field(default_factory=list)  # with the reason
    deltas: list[tuple[int, bytes]] = field(default_factory=list)  # (deltas partition, message)
    seen: tuple[str, list[Any]] | None = None  # the seen-ids table record of the batch


def by_partition(messages: list[Any]) -> dict[int, list[Any]]:
    """A batch's messages by input partition, in order."""
    out: dict[int, list[Any]] = defaultdict(list)
    for message in messages:
        out[message.partition].append(message)
    return out


class Ingest:
    def __init__(self, *, seen: SeenIds, catalog: PriceCatalog, stats: Counter[str], partitions: int,
                 grace_ms: int, deltas: faust.TopicT | None = None, dlq: faust.TopicT | None = None):
        self.seen = seen
        self.catalog = catalog
        self.stats = stats
        self.partitions = partitions
        self.grace_ms = grace_ms
        self.deltas = deltas
        self.dlq = dlq
        self.decode = codec("UsageEvent").decode

    async def process(self, app: faust.App, messages: list[Any], now: int) -> None:
        """A batch of messages, each input partition's share in that partition's transaction;
        acked inside the caller's commit gate."""
        self.seen.load()
        for part, part_messages in by_partition(messages).items():
            _current = process_as(app, part_messages[-1])  # held: the context keeps a weak reference
            # Faust's messages have a Record's fields: folded as they are (no copy per event).
            await self._send(part, self.fold(part, part_messages, now), now)
        await ack_all(app, messages)
        self.seen.compact(now, self.stats["events"])

    def fold(self, part: int, records: list[Record], now: int) -> Folded:
        """Validate, dedupe, judge lateness, price and fold one input partition's records."""
        out, batch, new_ids = Folded(), DeltaBatch(), []
        seen, stats = self.seen, self.stats
        for record in records:
            try:
                usage = self.decode(record.value)
                validate_usage(usage, now)
                if usage["event_time"] > now + self.grace_ms:
                    raise DecodeError(f"event_time {usage['event_time']} is more than the grace "
                                      f"({self.grace_ms // 1000}s) ahead of the worker's clock ({now})")
            except DecodeError as exc:
                stats["dlq"] += 1
                out.dead_letters.append((record, exc.reason))
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
        if new_ids:
            out.seen = seen.batch_record(part, records[-1].offset, new_ids, now)
        out.deltas = list(batch.messages(self.partitions, DELTAS_MESSAGE_BYTES))
        return out

    async def _send(self, part: int, folded: Folded, now: int) -> None:
        assert self.deltas is not None and self.dlq is not None
        for record, reason in folded.dead_letters:
            await self.dlq.send(key=record.key, value=record.value, headers={
                "reason": reason.encode(), "source": f"{record.topic}/{record.partition}/{record.offset}".encode()})
        if folded.seen is not None:
            await write(self.seen.table, part, *folded.seen)
            await self.seen.expire(part, now)
        for destination, value in folded.deltas:
            await self.deltas.send(value=value, partition=destination)
