"""Per-scope usage deltas: what stage 1 (ingest) sends stage 2 (account) through the deltas topic."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Iterator

import orjson

from tokenfuse.kafka.partitions import scope_partition

LOOP_SCOPES = ("run:", "agent:")  # the scopes whose deltas carry request fingerprints


@dataclass(slots=True)
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
    # Request fingerprint -> calls, for run and agent scopes only (the loop detector's input).
    fingerprints: dict[str, int] | None = None

    def absorb(self, other: "Delta") -> None:
        """Add another delta of the same scope; the result's time is the later of the two."""
        self.second_ms = max(self.second_ms, other.second_ms)
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cost_micro_usd += other.cost_micro_usd
        self.events += other.events
        self.last_event_id = other.last_event_id
        if other.fingerprints:
            self.fingerprints = self.fingerprints or {}
            for fp, n in other.fingerprints.items():
                self.fingerprints[fp] = self.fingerprints.get(fp, 0) + n


# A delta's JSON form (decode_message reads it back) without its fingerprints, in one C call:
# it is taken once per delta, the most numerous object of the worker.
_plain_fields = attrgetter("scope", "second_ms", "input_tokens", "output_tokens", "cached_tokens",
                           "cost_micro_usd", "events", "last_event_id")
_second = attrgetter("second_ms")


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
        fingerprint = event.get("request_fingerprint")
        if fingerprint:
            for scope in scopes:
                if scope.startswith(LOOP_SCOPES):
                    delta = deltas[(scope, second)]
                    delta.fingerprints = delta.fingerprints or {}
                    delta.fingerprints[fingerprint] = delta.fingerprints.get(fingerprint, 0) + 1

    def messages(self, partitions: int, max_bytes: int) -> Iterator[tuple[int, bytes]]:
        """The deltas as JSON messages per owning partition, in event-time order, each at most
        `max_bytes` long (a message over Kafka's limit would fail its send and stall the stage).
        One delta is far below any sane limit: validation caps every string of an event."""
        by_part: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for delta in sorted(self.deltas.values(), key=_second):
            by_part[scope_partition(delta.scope, partitions)].append(
                (*_plain_fields(delta), delta.fingerprints) if delta.fingerprints else _plain_fields(delta))
        for part, items in by_part.items():
            yield from ((part, chunk) for chunk in _bounded_json(items, max_bytes))


def _bounded_json(items: list[tuple[Any, ...]], max_bytes: int) -> Iterator[bytes]:
    """`items` as JSON arrays of at most max_bytes each (halving until they fit)."""
    encoded = orjson.dumps(items)
    if len(encoded) <= max_bytes or len(items) == 1:
        yield encoded
        return
    half = len(items) // 2
    yield from _bounded_json(items[:half], max_bytes)
    yield from _bounded_json(items[half:], max_bytes)


def decode_message(value: bytes) -> list[Delta]:
    return [Delta(*item) for item in orjson.loads(value)]


def merge_deltas(deltas: list[Delta], grid_ms: int) -> list[Delta]:
    """One delta per `grid_ms` of event time, for a scope no budget watches: the same windows
    get the same sums in fewer steps (see record.merge_grid_ms). A watched scope keeps its
    per-second deltas, so that the event crossing a threshold is the one an alert names."""
    merged: dict[int, Delta] = {}
    for d in deltas:
        m = merged.get(d.second_ms // grid_ms)
        if m is None:
            merged[d.second_ms // grid_ms] = Delta(d.scope, d.second_ms, d.input_tokens, d.output_tokens,
                                                   d.cached_tokens, d.cost_micro_usd, d.events,
                                                   d.last_event_id)  # a copy: the caller's stay as they are
        else:
            m.absorb(d)
    return list(merged.values())
