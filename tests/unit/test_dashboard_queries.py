"""The dashboard's reads on known data (embedded ClickHouse in this process): series from the
rollups, today's org and team spend, what spends under a scope, control changes, time ranges."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.history_helpers import chdb_settings, history, runner  # noqa: F401 - fixtures
from tokenfuse.dashboard import queries
from tokenfuse.dashboard.queries import TimeRange
from tokenfuse.history import rows
from tokenfuse.history.reports import DAY, HOUR, MINUTE, Period, ReportError
from tokenfuse.history.store import Pending, write
from tokenfuse.usage.pricing import PriceCatalog

NOW = int(time.time() * 1000) // HOUR * HOUR + 30 * MINUTE  # half past the current hour


def usage(agent, cost, when, team="search", run=None):
    return {"event_id": str(uuid.uuid4()), "event_time": when, "org": "acme", "team": team, "agent": agent,
            "run": run, "user": None, "model": "gpt-4o-mini", "provider": "openai", "input_tokens": 10,
            "output_tokens": 5, "cached_tokens": 0, "cost_micro_usd": cost, "tags": {"env": "prod"}}


def store(h, table, rows_):
    pending = Pending(table)
    for n, row in enumerate(rows_):
        pending.add(row, "t", 0, n)
    write(h, pending)


@pytest.fixture
def known(history):
    catalog = PriceCatalog.load()
    events = [usage("alpha", 100, NOW - 20 * MINUTE, run="r1"), usage("alpha", 200, NOW - 20 * MINUTE, run="r1"),
              usage("alpha", 300, NOW - 5 * MINUTE, run="r2"), usage("beta", 1000, NOW - 5 * MINUTE, team="ads"),
              usage("gamma", 50, NOW - 3 * DAY, team="infra")]
    store(history, rows.USAGE, [rows.usage_row(e, catalog, 0, n) for n, e in enumerate(events)])
    signed = {"scope": "agent:alpha", "state": "block", "budget_id": "b", "reason": "over", "metric": "events",
              "spent": 9, "limit": 8, "window_start": NOW - 30 * MINUTE, "until": NOW + HOUR, "throttle_delay_ms": None,
              "issued_at": NOW - MINUTE, "key_id": "default"}
    store(history, rows.CONTROL, [rows.control_row(signed, True, 0, 0),
                                  rows.control_row({**signed, "reason": "forged", "issued_at": NOW}, False, 0, 1)])
    return runner(history)


def test_series_gives_spend_per_bucket_of_the_asked_grain(known):
    period = Period(NOW - HOUR, NOW)
    assert queries.series(known, period, MINUTE, "agent:alpha", "cost_micro_usd") == {
        "agent:alpha": [[NOW - 20 * MINUTE, 300], [NOW - 5 * MINUTE, 300]]}
    assert queries.series(known, period, HOUR, "agent:alpha", "events") == {
        "agent:alpha": [[NOW - 30 * MINUTE, 3]]}


def test_series_of_a_pattern_draws_its_biggest_scopes(known):
    result = queries.series(known, Period(NOW - 7 * DAY, NOW), DAY, "team:*", "cost_micro_usd")
    assert sorted(result) == ["team:acme/ads", "team:acme/infra", "team:acme/search"]
    assert sum(v for _, v in result["team:acme/search"]) == 600


def test_series_of_runs_come_from_the_raw_events(known):
    assert queries.series(known, Period(NOW - HOUR, NOW), MINUTE, "run:r1", "cost_micro_usd") == {
        "run:r1": [[NOW - 20 * MINUTE, 300]]}


def test_org_and_team_spend_today(known):
    today = {r["scope"]: r["micro_usd"] for r in queries.org_team_today(known, NOW)}
    assert today == {"org:acme": 1600, "team:acme/search": 600, "team:acme/ads": 1000}  # gamma: 3 days ago


def test_agents_under_an_org_or_team_from_their_rollup_and_runs_of_a_team_or_agent(known):
    period = Period(NOW - HOUR, NOW)
    agents = queries.agents_under(known, period, "org:acme")
    assert [(a["name"], int(a["micro_usd"]), int(a["calls"])) for a in agents] == [("beta", 1000, 1), ("alpha", 600, 3)]
    assert [a["name"] for a in queries.agents_under(known, period, "team:acme/search")] == ["alpha"]
    runs = queries.runs_under(known, period, "team:acme/search")
    assert [(r["name"], int(r["micro_usd"])) for r in runs] == [("r1", 300), ("r2", 300)]  # ties by name
    assert [r["name"] for r in queries.runs_under(known, period, "agent:alpha")] == ["r1", "r2"]
    assert queries.runs_under(known, period, "team:acme/ads") == []  # beta ran without a run id


def test_spend_of_a_scope_in_several_windows_at_once(known):
    windows = [(NOW - 30 * MINUTE, NOW + 30 * MINUTE), (NOW // DAY * DAY - 7 * DAY, NOW + DAY), (0, 60_000)]
    assert queries.window_spend(known, "agent:alpha", windows) == [
        {"micro_usd": 600, "tokens": 45, "calls": 3}, {"micro_usd": 600, "tokens": 45, "calls": 3},
        {"micro_usd": 0, "tokens": 0, "calls": 0}]
    assert queries.window_spend(known, "run:r1", windows[:1]) == [{"micro_usd": 300, "tokens": 30, "calls": 2}]


def test_control_changes_show_verified_states_only(known):
    changes = queries.control_changes(known, "agent:alpha")
    assert [(c["state"], c["reason"], c["issued_at"]) for c in changes] == [("block", "over", NOW - MINUTE)]


def test_time_ranges_by_name_or_from_to_and_their_chart_grain():
    assert TimeRange.parse("1h", now_ms=NOW).period == Period(NOW - HOUR, NOW)
    assert TimeRange.parse("6h", now_ms=NOW).grain == MINUTE
    assert TimeRange.parse("24h", now_ms=NOW).grain == HOUR
    assert TimeRange.parse("30d", now_ms=NOW).grain == DAY
    custom = TimeRange.parse(None, start="2026-01-01", end="2026-01-02")
    assert custom.name == "custom" and custom.grain == HOUR
    with pytest.raises(ReportError, match="range must be one of"):
        TimeRange.parse("3y")
    with pytest.raises(ReportError, match="metric must be one of"):
        queries.series(lambda *a: {}, Period(0, 1), MINUTE, "global", "bitcoins")


@pytest.mark.parametrize("hostile", ["x' OR 1=1 --", "k=v'); DROP TABLE usage_events; --"])
def test_hostile_scope_values_stay_data(known, hostile):
    assert queries.runs_under(known, Period(NOW - HOUR, NOW), "agent:" + hostile) == []
    assert queries.agents_under(known, Period(NOW - HOUR, NOW), hostile) == []
    assert queries.window_spend(known, "tag:" + hostile, [(NOW - HOUR, NOW)]) == [
        {"micro_usd": 0, "tokens": 0, "calls": 0}]
    assert queries.control_changes(known, hostile) == []
    assert known("SELECT count() AS n FROM usage_events", {})["rows"] == [[5]]


def test_a_budgets_live_forecast_shows_its_eta_band_and_burn_rate():
    from tokenfuse.dashboard.views import forecast_text

    alert = {"eta_p50": 1_764_500_400_000, "eta_p10": 1_764_499_800_000, "eta_p90": 1_764_501_600_000,
             "burn_rate_per_hour": 1250.0}
    assert forecast_text(alert)["eta"] == "ETA 11:00 UTC (10:50–11:20), 1,250/h"
    assert forecast_text(None) is None and forecast_text({"eta_p50": None}) is None


def test_a_forecast_stays_live_until_cleared_and_only_for_its_window():
    from tokenfuse.dashboard.alerts import Forecasts

    forecasts = Forecasts()
    warned = {"kind": "forecast", "budget_id": "b", "scope": "team:acme/search", "window_start": 100, "eta_p50": 5}
    forecasts.take(warned)
    forecasts.take({**warned, "kind": "threshold"})
    assert forecasts.get("b", "team:acme/search", 100) == warned
    assert forecasts.get("b", "team:acme/search", 200) is None  # the next window: no forecast yet
    forecasts.take({**warned, "kind": "forecast_cleared"})
    assert forecasts.get("b", "team:acme/search", 100) is None


def test_the_window_chart_draws_each_eta_to_the_limit_or_to_the_spend_projected_at_the_window_end():
    from tokenfuse.dashboard.views import forecast_band
    from tokenfuse.history.reports import BudgetUse

    use = BudgetUse("b", "team:acme/search", "cost_micro_usd", "1d", window_start=0, window_end=1_000,
                    spent=400, limit=1_000)
    band = forecast_band({"eta_p10": 700, "eta_p50": 900, "eta_p90": 1_600}, use, now=400)
    assert band["p10"] == [[400, 400], [700, 1_000]] and band["p50"] == [[400, 400], [900, 1_000]]
    # p90 breaches after the window: the line stops at its end, on the way to the limit (600 of 1200 ms).
    assert band["p90"] == [[400, 400], [1_000, 700]]
    assert forecast_band(None, use, 400) is None and forecast_band({"eta_p50": None}, use, 400) is None
