"""Forecasts and hour-of-week profiles from the ClickHouse history (embedded engine)."""

from __future__ import annotations

import uuid

from tests.history_helpers import chdb_settings, history, runner  # noqa: F401 - fixtures
from tests.unit.test_history_reports import store
from tokenfuse.history import rows
from tokenfuse.history.forecasts import window_forecast, with_forecasts
from tokenfuse.history.profiles import hour_of_week_profile
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.worker.engine.seasonal import HOUR_MS, WEEK_MS, hour_of_week

MONDAY = 1_797_206_400_000  # 2026-12-14 00:00 UTC, a Monday
DAY = 86_400_000


def usage(cost: int, when: int) -> dict:
    return {"event_id": str(uuid.uuid4()), "event_time": when, "org": "acme", "team": "search", "agent": "bot",
            "run": None, "user": None, "model": "gpt-4o-mini", "provider": "openai", "input_tokens": 1,
            "output_tokens": 0, "cached_tokens": 0, "cost_micro_usd": cost, "tags": {}}


def test_a_budget_listing_forecasts_the_current_window_from_its_minutes(history):
    assert hour_of_week(MONDAY) == 0
    now = MONDAY + 10 * HOUR_MS  # 10:00: a day budget has spent $10 at $1 an hour
    events = [usage(1_000_000 // 6, MONDAY + m * 10 * 60_000) for m in range(60)]
    store(history, rows.USAGE, [rows.usage_row(e, PriceCatalog.load(), 0, n) for n, e in enumerate(events)])
    run = runner(history)
    fc = window_forecast(run, "agent:bot", "cost_micro_usd", "day", "UTC", 20_000_000, now)
    assert 0.9e6 < fc.rate_per_hour < 1.1e6 and fc.spent == 60 * (1_000_000 // 6)
    assert abs(fc.eta_p50 - (MONDAY + 20 * HOUR_MS)) < 2 * HOUR_MS  # at $1/h, $20 by 20:00
    assert window_forecast(run, "agent:bot", "cost_micro_usd", "rolling:60s", "UTC", 5, now) is None
    listing = with_forecasts(run, {"columns": ["budget_id", "scope"], "rows": [["b", "agent:bot"]]},
                             {"b": {"metric": "cost_micro_usd", "window": "day", "timezone": "UTC",
                                    "limit": 20_000_000}}, now)
    assert listing["columns"][2:] == ["burn_rate_per_hour", "eta_p50", "eta_p10", "projected"]
    assert listing["rows"][0][3].startswith("2026-12-14 ")


def test_an_hour_of_week_profile_needs_a_full_week_and_averages_the_weeks(history):
    now = MONDAY + 2 * WEEK_MS + 10 * HOUR_MS
    busy = [usage(1000, MONDAY + w * WEEK_MS + 9 * HOUR_MS + 60_000) for w in range(3)]  # Mondays 09:00
    store(history, rows.USAGE, [rows.usage_row(e, PriceCatalog.load(), 0, n) for n, e in enumerate(busy)])
    run = runner(history)
    profile = hour_of_week_profile(run, "agent:bot", "cost_micro_usd", weeks=4, now_ms=now)
    assert profile.weeks == 2 and profile.hourly[9] == 1000 and sum(profile.hourly) == 1000  # the last 2 weeks
    assert hour_of_week_profile(run, "agent:bot", "cost_micro_usd", now_ms=MONDAY + DAY) is None
    assert hour_of_week(MONDAY + 9 * HOUR_MS) == 9
