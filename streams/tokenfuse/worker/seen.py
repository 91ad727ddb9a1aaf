"""Dedupe and lateness: the event ids seen, and the newest event time per input partition.

One changelog record per input partition and batch: `<partition>:<offset>` -> SeenBatch. The
in-memory indexes are rebuilt from the table after recovery, so duplicates stay duplicates and
late events stay late across a restart.

The lateness mark of a partition never passes the worker's own clock: an event dated in the
future (a fast SDK clock, or an attacker) must not make every real event of its partition late.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import faust

from tokenfuse.worker.expiry import PeriodicExpiry
from tokenfuse.worker.faust_adapter.tables import drop_deleted


class SeenBatch(NamedTuple):
    """The table value: kept until `expires_ms`; the partition's lateness mark after the batch."""

    expires_ms: int
    event_ids: list[str]
    newest_ms: int


class SeenIds:
    def __init__(self, table: faust.Table, dedupe_ms: int, grace_ms: int):
        self.table = table
        self.dedupe_ms = dedupe_ms
        self.grace_ms = grace_ms
        self.ids: dict[str, int] = {}  # event id -> expiry
        self.newest: dict[int, int] = defaultdict(int)  # input partition -> lateness mark
        self.expiry = PeriodicExpiry(table)

    async def on_recover(self) -> None:
        drop_deleted(self.table)
        self.ids.clear()  # rebuilt from the recovered table by load()
        self.newest.clear()

    def load(self) -> None:
        """Rebuild the indexes from the table, once after a recovery (before the next batch)."""
        if self.ids:
            return
        for key, value in self.table.data.items():
            batch = SeenBatch(*value)
            self.ids.update(dict.fromkeys(batch.event_ids, batch.expires_ms))
            part = int(key.partition(":")[0])
            self.newest[part] = max(self.newest[part], batch.newest_ms)

    def is_duplicate(self, event_id: str, now: int) -> bool:
        """True if seen before; else remembers it."""
        if event_id in self.ids:
            return True
        self.ids[event_id] = now + self.dedupe_ms
        return False

    def is_late(self, part: int, event_time: int, now: int) -> bool:
        """Moves the partition's mark (never past `now`) and says if the event is behind it by
        more than the grace."""
        mark = max(self.newest[part], min(event_time, now))
        self.newest[part] = mark
        return event_time < mark - self.grace_ms

    def batch_record(self, part: int, offset: int, new_ids: list[str], now: int) -> tuple[str, list[Any]]:
        """The table record remembering a batch's new ids (written in the batch's transaction)."""
        return f"{part}:{offset}", list(SeenBatch(now + self.dedupe_ms, new_ids, self.newest[part]))

    async def expire(self, part: int, now: int) -> None:
        prefix = f"{part}:"
        await self.expiry.run(part, now, lambda k, v: k.startswith(prefix) and v[0] < now)

    def compact(self, now: int, counted_events: int) -> None:
        """Drop expired ids from memory once they clearly outnumber the live ones."""
        if len(self.ids) > 2 * counted_events + 100_000:
            for event_id in [e for e, expires in self.ids.items() if expires < now]:
                del self.ids[event_id]
