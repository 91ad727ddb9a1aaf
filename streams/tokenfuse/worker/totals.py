"""Running usage totals of one scope in one window, and the per-scope deltas that feed them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

METRICS = ("input_tokens", "output_tokens", "total_tokens", "cost_micro_usd")


class Totals(faust.Record, serializer="json"):
    """Sums for one (scope, window), plus the highest threshold percent each budget has fired in
    it: kept in the same table entry so it expires with the window."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_micro_usd: int = 0
    events: int = 0
    fired: dict[str, int] | None = None

    def plus(self, delta: "Delta") -> "Totals":
        return Totals(
            input_tokens=self.input_tokens + delta.input_tokens,
            output_tokens=self.output_tokens + delta.output_tokens,
            cached_tokens=self.cached_tokens + delta.cached_tokens,
            cost_micro_usd=self.cost_micro_usd + delta.cost_micro_usd,
            events=self.events + delta.events,
            fired=dict(self.fired or {}),
        )

    def metric(self, name: str) -> int:
        if name == "total_tokens":
            return self.input_tokens + self.output_tokens
        return getattr(self, name)


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

    def add(self, event: dict[str, Any], cost: int) -> None:
        self.input_tokens += event["input_tokens"]
        self.output_tokens += event["output_tokens"]
        self.cached_tokens += event["cached_tokens"]
        self.cost_micro_usd += cost
        self.events += 1
        self.last_event_id = event["event_id"]

    def to_json(self) -> dict[str, Any]:
        return {"s": self.scope, "t": self.second_ms, "i": self.input_tokens, "o": self.output_tokens,
                "c": self.cached_tokens, "u": self.cost_micro_usd, "n": self.events, "e": self.last_event_id}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Delta":
        return cls(d["s"], d["t"], d["i"], d["o"], d["c"], d["u"], d["n"], d["e"])


@dataclass
class DeltaBatch:
    """Folds a batch of priced events into one Delta per (scope, second): a burst for one scope
    costs one table update downstream, not one per event."""

    deltas: dict[tuple[str, int], Delta] = field(default_factory=dict)

    def add(self, event: dict[str, Any], scopes: list[str], cost: int) -> None:
        second = event["event_time"] - event["event_time"] % 1000
        for scope in scopes:
            delta = self.deltas.get((scope, second))
            if delta is None:
                delta = self.deltas[(scope, second)] = Delta(scope, second)
            delta.add(event, cost)
