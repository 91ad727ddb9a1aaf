"""Forecasts for `tokenfuse budgets list`: the worker's burn-rate engine replayed on the
history of each budget's current window (per-minute rollups), so the listing works without
asking the worker that owns each scope. Month budgets blend in the scope's hour-of-week profile."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from tokenfuse.history.profiles import hour_of_week_profile
from tokenfuse.history.reports import METRICS, Period, Runner
from tokenfuse.usage.windows import parse_window
from tokenfuse.worker.engine.burn_rate import BurnRate
from tokenfuse.worker.engine.forecast import Forecast, deseasonalised, forecast
from tokenfuse.worker.engine.plugins import PROFILED_FROM_MS

FORECAST_COLUMNS = ["burn_rate_per_hour", "eta_p50", "eta_p10", "projected"]
GRAIN_MS = {"usage_by_minute": 60_000, "usage_by_hour": 3_600_000, "usage_by_day": 86_400_000}


def window_forecast(run: Runner, scope: str, metric: str, window: str, tz: str, limit: int,
                    now_ms: int) -> Forecast | None:
    """The forecast of one budget and scope in the window holding `now_ms` (None: rolling)."""
    spec = parse_window(window, tz)
    if spec.re_arms or metric not in METRICS:
        return None
    start, end = spec.bounds(now_ms)
    table, params = Period(start, max(now_ms, start + 60_000)).source(scope)
    rows = run(f"SELECT toUnixTimestamp(bucket) * 1000 AS t, {METRICS[metric]} AS spent FROM {table} "
               "WHERE scope = {scope:String} AND bucket >= toDateTime({start_s:Int64}, 'UTC') "
               "AND bucket < toDateTime({end_s:Int64}, 'UTC') GROUP BY t ORDER BY t",
               {**params, "scope": scope})["rows"]
    profile = hour_of_week_profile(run, scope, metric, now_ms=now_ms) if spec.horizon_ms >= PROFILED_FROM_MS else None
    # A bucket's spend is taken at its middle (not at its start, which would date it early).
    half = GRAIN_MS.get(table, 60_000) // 2
    rate, spent = BurnRate.start(spec, start), 0
    for t, amount in rows:
        at = min(int(t) + half, now_ms)
        rate.observe(at, deseasonalised(float(amount), at, profile))
        spent += int(amount)
    return forecast(rate, spent, limit, start, end, now_ms, profile)


def with_forecasts(run: Runner, utilisation: dict[str, Any], budgets: dict[str, dict[str, Any]],
                   now_ms: int | None = None) -> dict[str, Any]:
    """The utilisation report (reports.utilisation) with the forecast columns added."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rows = []
    for row in utilisation["rows"]:
        budget = budgets.get(row[0])
        fc = (window_forecast(run, row[1], budget["metric"], budget["window"], budget["timezone"], budget["limit"],
                              now_ms) if budget else None)
        extra = ([round(fc.rate_per_hour), _clock(fc.eta_p50), _clock(fc.eta_p10), fc.projected] if fc
                 else [None, None, None, None])
        rows.append(list(row) + extra)
    return {"columns": utilisation["columns"] + FORECAST_COLUMNS, "rows": rows}


def _clock(t_ms: int | None) -> str:
    if t_ms is None:
        return "not in window"
    return datetime.fromtimestamp(t_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
