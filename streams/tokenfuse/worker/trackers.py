"""Totals per (scope, window) in Faust tables, one tracker per window kind.

- tumbling (`1m`…`7d`): a Faust tumbling windowed table; Faust expires old windows.
- rolling (`rolling:60s`): a Faust hopping windowed table (step = size/12); the total of the last
  `size` is read from the earliest window holding the event, so the resolution is one step.
- calendar (`day`/`month` in a time zone): a keyed table `scope|window|start`; months have no
  fixed size, and writing a window prunes the one two periods back, so keys stay bounded.

Why explicit window ranges instead of `table[key] += x` relative to the stream: updates arrive
as per-second deltas (see totals.Delta) and are written with the delta's own event time; every
write happens while the delta's event is the stream's current event, so it goes to the changelog
partition of the deltas partition that owns the scope.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import faust

from tokenfuse.windows import WindowSpec
from tokenfuse.worker.totals import Delta, Totals


class Window(NamedTuple):
    """The window a delta landed in, after apply()."""

    totals: Totals
    start_ms: int
    end_ms: int
    key: Any  # the table key, for save()


class Tracker(Protocol):
    spec: WindowSpec

    def apply(self, delta: Delta) -> Window:
        """Add the delta to every window holding it; return the one budgets are checked on."""

    def save(self, key: Any, totals: Totals) -> None:
        """Store totals changed after apply() (thresholds fired)."""


class FaustWindowTracker:
    """Tumbling and rolling windows on a Faust windowed table."""

    def __init__(self, app: faust.App, spec: WindowSpec, grace_s: float, partitions: int):
        self.spec = spec
        size = spec.size_ms / 1000
        table = app.Table(f"totals-{spec.name.replace(':', '-')}", default=Totals, value_type=Totals,
                          partitions=partitions)
        if spec.kind == "tumbling":
            table.tumbling(size, expires=size + grace_s)
        else:
            table.hopping(size, max(1.0, size // 12), expires=size + grace_s)
        self.table = table
        self._size_ms = spec.size_ms

    def apply(self, delta: Delta) -> Window:
        ts = delta.second_ms / 1000
        window = self.table.window
        for rng in window.ranges(ts):
            self.table[delta.scope, rng] = self.table[delta.scope, rng].plus(delta)
        key = (delta.scope, window.earliest(ts))
        start = round(key[1][0] * 1000)
        return Window(self.table[key], start, start + self._size_ms, key)

    def save(self, key: Any, totals: Totals) -> None:
        self.table[key] = totals


class CalendarTracker:
    """Calendar day or month in one time zone, on a keyed table shared by all calendar trackers."""

    def __init__(self, table: faust.Table, spec: WindowSpec):
        self.spec = spec
        self.table = table

    def _key(self, scope: str, start_ms: int) -> str:
        return f"{scope}|{self.spec.name}|{start_ms}"

    def apply(self, delta: Delta) -> Window:
        start, end = self.spec.bounds(delta.second_ms)
        key = self._key(delta.scope, start)
        totals = self.table[key].plus(delta)
        self.table[key] = totals
        # Prune the period before the previous one (the previous may still get late events).
        older, _ = self.spec.bounds(self.spec.bounds(start - 1)[0] - 1)
        if self._key(delta.scope, older) in self.table:
            del self.table[self._key(delta.scope, older)]
        return Window(totals, start, end, key)

    def save(self, key: Any, totals: Totals) -> None:
        self.table[key] = totals
