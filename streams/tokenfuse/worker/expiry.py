"""Deleting stale table keys, at most once a minute per table and partition (a full scan)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import faust

from tokenfuse.worker.faust_adapter.tables import write

EXPIRE_EVERY_MS = 60_000


class PeriodicExpiry:
    def __init__(self, table: faust.Table, every_ms: int = EXPIRE_EVERY_MS):
        self.table = table
        self.every_ms = every_ms
        self.last: dict[int, int] = defaultdict(int)

    async def run(self, partition: int, now: int, stale: Callable[[str, Any], bool]) -> None:
        """Delete this partition's keys for which `stale(key, value)` holds, if a minute passed."""
        if now - self.last[partition] < self.every_ms:
            return
        self.last[partition] = now
        for key in [k for k, v in self.table.data.items() if stale(k, v)]:
            await write(self.table, partition, key, None)
