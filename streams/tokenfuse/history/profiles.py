"""Hour-of-week spend profiles of a scope from the ClickHouse rollups: what a calendar-month
forecast blends with its live burn rate (worker/engine/seasonal.py, docs/forecasts.md)."""

from __future__ import annotations

import time

from tokenfuse.history.reports import METRICS, Runner
from tokenfuse.worker.engine.seasonal import HOUR_MS, WEEK_HOURS, WEEK_MS, HourOfWeekProfile, hour_of_week

DEFAULT_WEEKS = 4


def hour_of_week_profile(run: Runner, scope: str, metric: str, weeks: int = DEFAULT_WEEKS,
                         now_ms: int | None = None) -> HourOfWeekProfile | None:
    """Mean spend per hour of the week over the last `weeks` whole weeks before this hour, or
    None without a full week of history (a partial week would bias the shape)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    end = now_ms - now_ms % HOUR_MS
    start = end - weeks * WEEK_MS
    rows = run(f"SELECT toUnixTimestamp(bucket) * 1000 AS t, {METRICS[metric]} AS spent FROM usage_by_hour "
               "WHERE scope = {scope:String} AND bucket >= toDateTime({start_s:Int64}, 'UTC') "
               "AND bucket < toDateTime({end_s:Int64}, 'UTC') GROUP BY t ORDER BY t",
               {"scope": scope, "start_s": start // 1000, "end_s": end // 1000})["rows"]
    if not rows:
        return None
    first = int(rows[0][0])
    observed = min(weeks, (end - first) // WEEK_MS)
    if observed < 1:
        return None
    since = end - observed * WEEK_MS
    hourly = [0.0] * WEEK_HOURS
    for t, spent in rows:
        if int(t) >= since:
            hourly[hour_of_week(int(t))] += float(spent) / observed
    return HourOfWeekProfile(tuple(hourly), observed)
