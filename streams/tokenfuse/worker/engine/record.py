"""Everything the engine keeps about one scope, in one JSON record of one Faust table.

Why one record per scope instead of a Faust windowed table per window: every table write is a
changelog message (measured here: ~230 µs each with exactly-once), and a windowed table writes
once per window per key per update. One record holding all tracked windows of a scope costs one
write per scope per batch, whatever the number of windows and events.

Record layout (kept small, it is the changelog value):
  "w": {window name: [[start, end, totals], ...]}       tumbling and calendar windows, newest
        first (see KEEP_WINDOWS)
  "r": {window name: {bucket start: [i, o, c, u, n]}}     rolling windows, in buckets of size/12
  "f": {budget id: {window start: percent}}              the highest threshold fired per window
  "e": {budget id: enforcement entry}                     what each budget asks for this scope
  "m": [state, budget id, until]                          the control state last published
  "t": newest event time seen (ms)                        for expiring idle scopes
  "o": offset of the last deltas message added             so a replayed message is not added twice
Totals vectors are [input, output, cached, cost_micro_usd, events].
"""

from __future__ import annotations

from dataclasses import replace
from math import gcd
from typing import Any, Iterable, NamedTuple

from tokenfuse.usage.windows import WindowSpec
from tokenfuse.worker.engine.deltas import Delta

# Tumbling windows kept per spec: the newest two, and any that ended within RETAIN_MS of the
# scope's newest event. Lateness is judged per input partition, so one partition may still send
# on-time usage for a window another partition has moved past (after a restart, during a
# catch-up); ten minutes of skew keep short windows exact.
KEEP_WINDOWS = 2
RETAIN_MS = 600_000
FIELDS = ("input_tokens", "output_tokens", "cached_tokens", "cost_micro_usd", "events")


class Window(NamedTuple):
    start: int
    end: int
    totals: list[int]  # [i, o, c, u, n]


def metric(totals: list[int], name: str) -> int:
    if name == "total_tokens":
        return totals[0] + totals[1]
    return totals[FIELDS.index(name)]


def new_record() -> dict[str, Any]:
    return {"w": {}, "r": {}, "f": {}, "e": {}, "m": ["allow", None, None], "t": 0}


def _add(vec: list[int], d: Delta) -> None:
    vec[0] += d.input_tokens
    vec[1] += d.output_tokens
    vec[2] += d.cached_tokens
    vec[3] += d.cost_micro_usd
    vec[4] += d.events


def rolling_step_ms(spec: WindowSpec) -> int:
    return max(1000, spec.size_ms // 12)


def atom_ms(specs: Iterable[WindowSpec]) -> int:
    """The longest span that never straddles a window or bucket boundary of any of `specs`
    (calendar boundaries fall on whole minutes in every current time zone)."""
    sizes = [60_000 if s.kind == "calendar" else rolling_step_ms(s) if s.kind == "rolling" else s.size_ms
             for s in specs]
    return gcd(*sizes) if sizes else 1000


def merge_deltas(deltas: list[Delta], atom: int) -> list[Delta]:
    """One delta per `atom` of event time, for a scope no budget watches: the same windows get
    the same sums in fewer steps. (A watched scope keeps its per-second deltas, so that the
    event crossing a threshold is the one an alert names.)"""
    merged: dict[int, Delta] = {}
    for d in deltas:
        m = merged.get(d.second_ms // atom)
        if m is None:
            merged[d.second_ms // atom] = replace(d)  # a copy: the caller's deltas stay as they are
        else:
            m.absorb(d)
    return list(merged.values())


def apply_delta(record: dict[str, Any], delta: Delta, spec: WindowSpec) -> bool:
    """Add the delta to the window of `spec` holding its time; False if that window is older than
    the ones kept (too late to count). `current_window(record, spec, delta.second_ms)` reads the
    window it went to; that costs a sum for rolling windows, so it is read only when a budget
    needs it."""
    ts = delta.second_ms
    record["t"] = max(record["t"], ts)
    if spec.kind == "rolling":
        step = rolling_step_ms(spec)
        buckets = record["r"].setdefault(spec.name, {})
        key = str(ts - ts % step)
        bucket = buckets.get(key)
        if bucket is None:  # time moved on by a bucket: drop those out of every window's reach
            bucket = buckets[key] = [0, 0, 0, 0, 0]
            horizon = record["t"] - spec.size_ms - step
            for old in [k for k in buckets if int(k) <= horizon]:
                del buckets[old]
        _add(bucket, delta)
        return True
    windows = record["w"].setdefault(spec.name, [])
    # Usually the delta falls in a window already kept: no need to compute bounds (calendar
    # bounds take a time-zone conversion).
    match = next((w for w in windows if w[0] <= ts < w[1]), None)
    if match is None:
        start, end = spec.bounds(ts)
        match = [start, end, [0, 0, 0, 0, 0]]
        windows.append(match)
        windows.sort(key=lambda w: -w[0])
        horizon = record["t"] - RETAIN_MS
        windows[KEEP_WINDOWS:] = [w for w in windows[KEEP_WINDOWS:] if w[1] > horizon]
        if match not in windows:
            return False
    _add(match[2], delta)
    return True


def rolling_window(record: dict[str, Any], spec: WindowSpec, ts: int) -> Window:
    """The sum of the buckets starting inside (ts - size, ts]: the last `size`, at bucket resolution."""
    total = [0, 0, 0, 0, 0]
    low = ts - spec.size_ms
    for key, vec in record["r"].get(spec.name, {}).items():
        if low < int(key) <= ts:
            for i in range(5):
                total[i] += vec[i]
    return Window(low, ts, total)


def current_window(record: dict[str, Any], spec: WindowSpec, now_ms: int) -> Window:
    """The window holding `now_ms` (zeros if nothing was spent in it): what /totals reports."""
    if spec.kind == "rolling":
        return rolling_window(record, spec, now_ms)
    start, end = spec.bounds(now_ms)
    for w in record["w"].get(spec.name, []):
        if w[0] == start:
            return Window(*w)
    return Window(start, end, [0, 0, 0, 0, 0])
