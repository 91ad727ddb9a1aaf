"""Per-scope usage deltas: what stage 1 (ingest) sends stage 2 (account) through the deltas topic."""

from __future__ import annotations

from collections import defaultdict
import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from tokenfuse.kafka.partitions import scope_partition


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

    def messages(self, partitions: int, max_bytes: int) -> Iterator[tuple[int, bytes]]:
        """The deltas as JSON messages per owning partition, in event-time order, each at most
        `max_bytes` long (a message over Kafka's limit would fail its send and stall the stage).
        One delta is far below any sane limit: validation caps every string of an event."""
        chunks: dict[int, list[str]] = defaultdict(list)
        sizes: dict[int, int] = defaultdict(int)
        for delta in sorted(self.deltas.values(), key=lambda d: d.second_ms):
            part = scope_partition(delta.scope, partitions)
            item = json.dumps(delta.to_json(), separators=(",", ":"))
            if sizes[part] + len(item) + 2 > max_bytes and chunks[part]:
                yield part, _array(chunks.pop(part))
                sizes[part] = 0
            chunks[part].append(item)
            sizes[part] += len(item) + 1
        for part, items in chunks.items():
            yield part, _array(items)


def _array(items: list[str]) -> bytes:
    return ("[" + ",".join(items) + "]").encode()


def decode_message(value: bytes) -> list[Delta]:
    return [Delta(*item) for item in json.loads(value)]


def merge_deltas(deltas: list[Delta], grid_ms: int) -> list[Delta]:
    """One delta per `grid_ms` of event time, for a scope no budget watches: the same windows
    get the same sums in fewer steps (see record.merge_grid_ms). A watched scope keeps its
    per-second deltas, so that the event crossing a threshold is the one an alert names."""
    merged: dict[int, Delta] = {}
    for d in deltas:
        m = merged.get(d.second_ms // grid_ms)
        if m is None:
            merged[d.second_ms // grid_ms] = replace(d)  # a copy: the caller's deltas stay as they are
        else:
            m.absorb(d)
    return list(merged.values())
