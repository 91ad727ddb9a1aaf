"""Everything the engine keeps about one scope: one record, one changelog value.

Why one record per scope instead of a Faust windowed table per window: every table write is a
changelog message (measured: ~230 µs each with exactly-once), and a windowed table writes once
per window per key per update. One record holding all tracked windows of a scope costs one write
per scope per batch, whatever the number of windows and events.

The record's JSON form (`to_json`) keeps one-letter keys because it is the changelog value,
written once per scope and batch; in memory every field has a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd
from typing import Any, Iterable, Mapping, NamedTuple

from tokenfuse.usage.windows import Window, WindowSpec, spec_named
from tokenfuse.worker.engine.deltas import Delta


@dataclass(frozen=True)
class Enforcement:
    """What one budget (or detector) asks for a scope, and why: a rung of the ladder until `until`."""

    state: str  # allow | warn | throttle | block
    budget_id: str
    metric: str
    spent: int
    limit: int
    window_start: int
    until: int
    reason: str

    def to_json(self) -> list[Any]:
        return [self.state, self.budget_id, self.metric, self.spent, self.limit, self.window_start, self.until,
                self.reason]

    @classmethod
    def from_json(cls, data: list[Any] | dict[str, Any]) -> "Enforcement":
        return cls(**data) if isinstance(data, dict) else cls(*data)  # a dict before 0.2


class Published(NamedTuple):
    """The control state last published for the scope (what runtimes see now)."""

    state: str = "allow"
    budget_id: str | None = None
    until: int | None = None


@dataclass(slots=True)
class ScopeRecord:
    # Per tracked window name, that window kind's state (usage/windows.py).
    windows: dict[str, Any] = field(default_factory=dict)
    # Per budget id: {window key: the highest threshold percent fired in that window}.
    fired: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per budget id (or detector entry id): what it asks for this scope.
    entries: dict[str, Enforcement] = field(default_factory=dict)
    published: Published = Published()
    version: int = 0  # of the scope's newest control state this worker knows (control/signing.py)
    newest_ms: int = 0  # newest event time seen, for expiring idle scopes
    offset: int = -1  # the last deltas message added, so a replayed message is not added twice
    # Per detector name, its states for this scope by budget: objects with to_json(), or their JSON
    # lists as recovered from the changelog until the detector next loads them (settle.Detector).
    detectors: dict[str, Any] = field(default_factory=dict)

    def add(self, delta: Delta, specs: Iterable[WindowSpec]) -> list[str]:
        """Add a delta to every window of `specs`. Returns the names of those whose windows had
        moved past it (usually none: the delta counts in the others)."""
        ts = delta.second_ms
        if ts > self.newest_ms:
            self.newest_ms = ts
        vec = [delta.input_tokens, delta.output_tokens, delta.cached_tokens, delta.cost_micro_usd, delta.events]
        windows, newest, evicted = self.windows, self.newest_ms, []
        for spec in specs:
            state = windows.get(spec.name)
            if state is None:
                state = windows[spec.name] = spec.new_state()
            if not spec.add(state, ts, vec, newest):
                evicted.append(spec.name)
        return evicted

    def window(self, spec: WindowSpec, ts: int) -> Window:
        """The window of `spec` holding ts (zeros if nothing was spent in it)."""
        state = self.windows.get(spec.name)
        return spec.window_at(spec.new_state() if state is None else state, ts)

    @property
    def allowed(self) -> bool:
        return self.published.state == "allow"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "w": {name: spec_named(name).dump_state(state) for name, state in self.windows.items()},
            "f": self.fired, "e": {k: e.to_json() for k, e in self.entries.items()},
            "m": list(self.published), "t": self.newest_ms, "o": self.offset, "v": self.version,
        }
        if self.detectors:
            out["d"] = {name: {key: state if isinstance(state, list) else state.to_json() for key, state in states.items()}
                        for name, states in self.detectors.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ScopeRecord":
        raw = {**data.get("w", {}), **data.get("r", {})}  # "r": rolling windows, before 0.2
        return cls(
            windows={name: spec_named(name).load_state(state) for name, state in raw.items()},
            fired=data.get("f", {}),
            entries={k: Enforcement.from_json(e) for k, e in data.get("e", {}).items()},
            published=Published(*data.get("m", ())), newest_ms=data.get("t", 0), offset=data.get("o", -1),
            version=data.get("v", 0),
            detectors=data.get("d", {}),
        )


def merge_grid_ms(specs: Iterable[WindowSpec]) -> int:
    """The longest span that never straddles a window or bucket boundary of any of `specs`."""
    sizes = [s.grid_ms for s in specs]
    return gcd(*sizes) if sizes else 1000
