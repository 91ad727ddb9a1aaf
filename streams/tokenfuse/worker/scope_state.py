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

from typing import Any, NamedTuple

from tokenfuse.windows import WindowSpec
from tokenfuse.worker.totals import Delta

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


def apply_delta(record: dict[str, Any], delta: Delta, spec: WindowSpec) -> Window | None:
    """Add the delta to the window of `spec` holding its time; None if that window is older than
    the ones kept (too late to count)."""
    ts = delta.second_ms
    record["t"] = max(record["t"], ts)
    if spec.kind == "rolling":
        step = rolling_step_ms(spec)
        buckets = record["r"].setdefault(spec.name, {})
        _add(buckets.setdefault(str(ts - ts % step), [0, 0, 0, 0, 0]), delta)
        horizon = record["t"] - spec.size_ms - step
        for old in [k for k in buckets if int(k) <= horizon]:
            del buckets[old]
        return rolling_window(record, spec, ts)
    start, end = spec.bounds(ts)
    windows = record["w"].setdefault(spec.name, [])
    match = next((w for w in windows if w[0] == start), None)
    if match is None:
        match = [start, end, [0, 0, 0, 0, 0]]
        windows.append(match)
        windows.sort(key=lambda w: -w[0])
        horizon = record["t"] - RETAIN_MS
        windows[KEEP_WINDOWS:] = [w for w in windows[KEEP_WINDOWS:] if w[1] > horizon]
        if match not in windows:
            return None
    _add(match[2], delta)
    return Window(*match)


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
