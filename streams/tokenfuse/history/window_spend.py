"""Spend per scope and budget window over a lookback, from the rollups: what recommendations
stand on.

Windows are the budgets' own (tokenfuse.usage.windows): tumbling windows aligned to the epoch,
calendar days and months in a time zone. The rollup read is the coarsest one the window is made
of: usage_by_day for whole UTC days and months, usage_by_hour for whole hours and for calendar
windows in another time zone (zones with half-hour offsets are read to the hour),
usage_by_minute for whole minutes (kept 35 days). Only complete windows count; a window in which
a scope spent nothing is a zero, from the scope's first window with usage on (before that the
scope did not exist, as far as the lookback can tell). Every user value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenfuse.history.reports import METRICS, ReportError, Runner, scope_filter
from tokenfuse.usage.windows import WindowSpec, parse_window

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
MINUTE_ROLLUP_DAYS = 35
# The start of a bucket's window, in epoch seconds: fixed SQL per window kind.
_TUMBLING = "intDiv(toUnixTimestamp(bucket), {size_s:Int64}) * {size_s:Int64}"
_DAY = "toUnixTimestamp(toStartOfDay(bucket, {tz:String}))"
_MONTH = "toUnixTimestamp(toDateTime(toStartOfMonth(bucket, {tz:String}), {tz:String}))"


@dataclass(frozen=True)
class Windows:
    """The complete windows of a lookback: [starts[0], end) in steps of the window."""

    spec: WindowSpec
    starts: list[int]
    end: int

    @property
    def mean_ms(self) -> float:
        return (self.end - self.starts[0]) / len(self.starts)


def complete_windows(window: str, timezone: str, lookback_ms: int, now_ms: int) -> Windows:
    """The complete windows of the lookback, counted back from the start of the current window
    (30d of day windows = the last 30 days): those starting at or after that start - lookback."""
    spec = window_spec(window, timezone)
    end = spec.bounds(now_ms)[0]
    start, after = spec.bounds(end - lookback_ms)
    if start < end - lookback_ms:
        start = after
    starts = []
    while start < end:
        starts.append(start)
        start = spec.bounds(start)[1]
    if not starts:
        raise ReportError(f"--lookback holds no complete {window} window")
    return Windows(spec, starts, end)


def window_spec(window: str, timezone: str) -> WindowSpec:
    """A budget window that the rollups can be read by; ReportError says why not."""
    try:
        spec = parse_window(window, timezone)
    except ValueError as exc:
        raise ReportError(f"--window: {exc}") from None
    if spec.kind == "rolling":
        raise ReportError("--window: recommendations need tumbling or calendar windows, not rolling ones")
    if spec.kind == "tumbling" and spec.size_ms % MINUTE:
        raise ReportError(f"--window: {spec.name} is not whole minutes, the finest rollup")
    return spec


def _source(spec: WindowSpec, windows: Windows) -> tuple[str, str, dict[str, object]]:
    """(rollup table, SQL of a bucket's window start, its parameters)."""
    if spec.kind == "calendar":
        table = "usage_by_day" if spec.timezone == "UTC" else "usage_by_hour"
        return table, _DAY if spec.unit == "day" else _MONTH, {"tz": spec.timezone}
    table = next(t for grain, t in ((DAY, "usage_by_day"), (HOUR, "usage_by_hour"), (MINUTE, "usage_by_minute"))
                 if spec.size_ms % grain == 0)
    if table == "usage_by_minute" and windows.end - windows.starts[0] > MINUTE_ROLLUP_DAYS * DAY:
        raise ReportError(f"--window {spec.name} is read from per-minute rollups, kept {MINUTE_ROLLUP_DAYS} "
                          "days: use a shorter --lookback or whole-hour windows")
    return table, _TUMBLING, {"size_s": spec.size_ms // 1000}


def spend_per_window(run: Runner, scope: str, metric: str, windows: Windows) -> dict[str, list[int]]:
    """Per scope key matching `scope` (a key or a pattern like team:*): its amounts per complete
    window, oldest first, from its first window with usage."""
    if metric not in METRICS or metric == "events":
        raise ReportError(f"--metric must be one of {', '.join(m for m in METRICS if m != 'events')}")
    if scope.startswith("run:"):
        raise ReportError("--scope: runs are not rolled up (they are countless and short-lived); "
                          "recommend for agents, teams, users, models or tags")
    table, window_sql, params = _source(windows.spec, windows)
    where, scope_params = scope_filter(scope)
    # One row per scope: the window numbers (1-based, 0 = outside) and amounts, as two arrays.
    result = run(f"SELECT scope, groupArray(i), groupArray(amount) FROM (SELECT scope, "
                 f"indexOf({{starts:Array(Int64)}}, {window_sql}) AS i, {METRICS[metric]} AS amount FROM {table} "
                 f"WHERE {where} AND bucket >= toDateTime({{start_s:Int64}}, 'UTC') "
                 f"AND bucket < toDateTime({{end_s:Int64}}, 'UTC') GROUP BY scope, i) WHERE i > 0 GROUP BY scope",
                 {**params, **scope_params, "starts": [start // 1000 for start in windows.starts],
                  "start_s": windows.starts[0] // 1000, "end_s": windows.end // 1000})
    out = {}
    for key, numbers, amounts in sorted(result["rows"]):
        values = [0] * len(windows.starts)
        for i, amount in zip(numbers, amounts):
            values[int(i) - 1] = int(amount)
        first = next((i for i, v in enumerate(values) if v), None)
        if first is not None:
            out[key] = values[first:]
    return out
