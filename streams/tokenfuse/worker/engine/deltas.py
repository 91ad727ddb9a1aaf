"""Per-scope usage deltas: what stage 1 (ingest) sends stage 2 (account) through the deltas topic."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)  # murmur2 is pure Python; busy scopes recur in every batch
def scope_partition(scope: str, partitions: int) -> int:
    """The deltas (and scope-state changelog) partition that owns a scope: Kafka's default
    partitioner on the scope key, so it matches a record keyed by the scope."""
    return (murmur2(scope.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class Delta:
    """Usage of one scope within one second of event time, summed over a batch of events."""

    scope: str
    second_ms: int
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_micro_usd: int = 0
    events: int = 0
    last_event_id: str = ""

    def absorb(self, other: "Delta") -> None:
        """Add another delta of the same scope; the result's time is the later of the two."""
        self.second_ms = max(self.second_ms, other.second_ms)
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cost_micro_usd += other.cost_micro_usd
        self.events += other.events
        self.last_event_id = other.last_event_id

    def to_json(self) -> list[Any]:
        return [self.scope, self.second_ms, self.input_tokens, self.output_tokens, self.cached_tokens,
                self.cost_micro_usd, self.events, self.last_event_id]

    @classmethod
    def from_json(cls, d: list[Any]) -> "Delta":
        return cls(*d)


@dataclass
class DeltaBatch:
    """Folds a batch of priced events into one Delta per (scope, second): a burst for one scope
    costs one table update downstream, not one per event."""

    deltas: dict[tuple[str, int], Delta] = field(default_factory=dict)

    def add(self, event: dict[str, Any], scopes: list[str], cost: int) -> None:
        # The inner loop of ingest (once per scope of every event): fields read once, no calls.
        second = event["event_time"] - event["event_time"] % 1000
        i, o, c, event_id = event["input_tokens"], event["output_tokens"], event["cached_tokens"], event["event_id"]
        deltas = self.deltas
        for scope in scopes:
            delta = deltas.get((scope, second))
            if delta is None:
                deltas[(scope, second)] = Delta(scope, second, i, o, c, cost, 1, event_id)
            else:
                delta.input_tokens += i
                delta.output_tokens += o
                delta.cached_tokens += c
                delta.cost_micro_usd += cost
                delta.events += 1
                delta.last_event_id = event_id

    def by_partition(self, partitions: int) -> dict[int, list[list[Any]]]:
        """Deltas grouped by the partition owning their scope, in event-time order: one message
        per partition per batch carries them all."""
        out: dict[int, list[list[Any]]] = defaultdict(list)
        for delta in sorted(self.deltas.values(), key=lambda d: d.second_ms):
            out[scope_partition(delta.scope, partitions)].append(delta.to_json())
        return out
