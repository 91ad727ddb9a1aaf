"""Stage 2, `account` (deltas topic, keyed by scope): add each scope's deltas to its record,
check its budgets and detectors (engine/settle.py), publish alerts and signed control states,
write the record once per batch. The sweep settles scopes without new usage: a block ends
with its window, and a budget created, raised or lowered applies to the spend already made.

Each scope lives in exactly one deltas partition, so totals are exact with any number of workers.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any, Callable, Mapping

import faust

from tokenfuse.kafka.partitions import scope_partition
from tokenfuse.usage.windows import FIELDS, WindowSpec
from tokenfuse.worker.budget_feed import BudgetFeed
from tokenfuse.worker.engine.deltas import Delta, decode_message
from tokenfuse.worker.engine.plugins import ForecastDetector
from tokenfuse.worker.engine.record import ScopeRecord
from tokenfuse.worker.engine.rules import BudgetIndex
from tokenfuse.worker.engine.settle import Output, Settler
from tokenfuse.worker.expiry import PeriodicExpiry
from tokenfuse.worker.faust_adapter.tables import drop_deleted, write, write_many
from tokenfuse.worker.faust_adapter.transactions import ack_all, process_as
from tokenfuse.worker.ingest import by_partition


def offsets_and_values(messages: list[Any]) -> list[tuple[int, bytes]]:
    return [(message.offset, message.value) for message in messages]


class Account:
    def __init__(self, *, table: faust.Table, settler: Settler, feed: BudgetFeed, stats: Counter[str],
                 outputs: Mapping[str, faust.TopicT], partitions: int, idle_ms: Callable[[], int],
                 owned: Callable[[], set[int]], forecasts: ForecastDetector | None = None):
        self.table = table
        self.settler = settler
        self.feed = feed
        self.stats = stats
        self.outputs = outputs  # "alerts" and "control" topics
        self.partitions = partitions
        self.idle_ms = idle_ms
        self.owned = owned
        self.forecasts = forecasts
        self.expiry = PeriodicExpiry(table)
        self.swept_version = -1

    async def on_recover(self) -> None:
        drop_deleted(self.table)
        self.settler.watched.update(k for k, record in self.table.data.items() if not record.allowed)

    async def process(self, app: faust.App, messages: list[Any], now: int) -> None:
        """A batch of deltas messages (a scope in several is written once), each deltas
        partition's share in its transaction; acked inside the caller's commit gate."""
        index = self.feed.current()
        for part, part_messages in by_partition(messages).items():
            _current = process_as(app, part_messages[-1])  # held: the context keeps a weak reference
            changed, outputs = self.settle(offsets_and_values(part_messages), index, now)
            await write_many(self.table, part, changed)
            await self.publish(outputs)
            idle_before = now - self.idle_ms()
            await self.expiry.run(part, now, lambda k, v: v.newest_ms < idle_before and v.allowed
                                  and scope_partition(k, self.partitions) == part)
        await ack_all(app, messages)

    def settle(self, messages: list[tuple[int, bytes]], index: BudgetIndex,
               now: int) -> tuple[dict[str, ScopeRecord], list[Output]]:
        """Settle one deltas partition's messages ((offset, value) pairs) into the scope records
        in memory: the records changed and the messages to publish. No Faust, no I/O."""
        by_scope: dict[str, list[tuple[int, Delta]]] = defaultdict(list)
        for offset, value in messages:
            for delta in decode_message(value):
                by_scope[delta.scope].append((offset, delta))
        data = self.table.data
        outputs: list[Output] = []
        changed: dict[str, ScopeRecord] = {}
        for scope, offset_deltas in by_scope.items():
            record = data.get(scope) or ScopeRecord()
            # A message already in the record (its write committed, its offset not: a crash
            # between) is not added twice.
            done = record.offset
            deltas = [d for offset, d in offset_deltas if offset > done]
            if not deltas:
                continue
            record.offset = offset_deltas[-1][0]
            if scope == "global":  # every counted event is in it: this stage's progress
                self.stats["settled_events"] += sum(d.events for d in deltas)
            outputs += self.settler.settle(scope, record, deltas, index, now)
            changed[scope] = record
        return changed, outputs

    async def publish(self, outputs: list[Output]) -> None:
        for o in outputs:
            await self.outputs[o.topic].send(key=o.key, value=o.value)

    def scopes_to_sweep(self) -> list[str]:
        """Every scope after a budgets change, else those not allowed (their windows end)."""
        if self.feed.version != self.swept_version:
            self.swept_version = self.feed.version
            return list(self.table.data.keys())
        return list(self.settler.watched)

    async def sweep_scope(self, scope: str, now: int) -> None:
        """Settle one scope without deltas. Outside any stream event: the changelog write goes to
        the scope's partition's transaction."""
        self.settler.watched.discard(scope)  # settle() adds it back while it is not allowed
        part = scope_partition(scope, self.partitions)
        record = self.table.data.get(scope)
        if record is None or part not in self.owned():
            return
        before = json.dumps(record.to_json())
        outputs = self.settler.settle(scope, record, [], self.feed.current(), now)
        if json.dumps(record.to_json()) != before:
            await write(self.table, part, scope, record)
        await self.publish(outputs)

    def totals(self, scope: str, specs: Mapping[str, WindowSpec], now: int) -> dict[str, Any]:
        """The scope's current windows, for GET /totals."""
        record = self.table.data.get(scope) or ScopeRecord()
        windows = {}
        for name, spec in specs.items():
            w = record.window(spec, now)
            windows[name] = {"start": w.start, "end": w.end, **dict(zip(FIELDS, w.totals))}
        out = {"scope": scope, "windows": windows, "state": record.published.state}
        if self.forecasts is not None:  # per budget: burn rate, ETA with its band, projected spend
            budgets = self.feed.current().for_scope(scope)
            out["forecasts"] = self.forecasts.forecasts(record, budgets, now)
        return out
