"""Reports on known data give known answers; hostile report parameters stay data."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.history_helpers import chdb_settings, history, runner  # noqa: F401 - fixtures
from tokenfuse.history import reports, rows
from tokenfuse.history.reports import Period, ReportError
from tokenfuse.history.store import Pending, write
from tokenfuse.usage.pricing import PriceCatalog

HOUR, DAY = 3_600_000, 86_400_000
NOW = int(time.time() * 1000) // HOUR * HOUR + 30 * 60_000  # half past the current hour
TODAY = NOW // DAY * DAY


def usage(agent, cost, when, team="search", model="gpt-4o-mini", provider="openai", tokens=10):
    return {"event_id": str(uuid.uuid4()), "event_time": when, "org": "acme", "team": team, "agent": agent,
            "run": f"run-{agent}", "user": None, "model": model, "provider": provider, "input_tokens": tokens,
            "output_tokens": 0, "cached_tokens": 0, "cost_micro_usd": cost, "tags": {"env": "prod"}}


def store(h, table, rows_, offset=0):
    p = Pending(table)
    for n, row in enumerate(rows_):
        p.add(row, "t", 0, offset + n)
    write(h, p)


@pytest.fixture
def known(history):
    catalog = PriceCatalog.load()
    events = ([usage("alpha", 1_000_000, NOW - 10 * 60_000) for _ in range(3)]        # $3 this hour
              + [usage("beta", 500_000, NOW - 2 * HOUR, team="ads", model="claude-sonnet-4",
                       provider="anthropic")]                                          # $0.5 two hours ago
              + [usage("gamma", 7_000_000, NOW - 3 * DAY)])                            # $7 three days ago
    store(history, rows.USAGE, [rows.usage_row(e, catalog, 0, n) for n, e in enumerate(events)])
    budget = {"id": "team-day", "scope": "team:acme/*", "metric": "cost_micro_usd", "window": "day",
              "timezone": "UTC", "limit": 4_000_000, "thresholds": [{"percent": 100, "action": "block"}],
              "description": "", "updated_at": NOW}
    store(history, rows.BUDGETS, [rows.budget_row(budget, 0, 0, NOW),
                                  rows.budget_row(dict(budget, id="gone"), 0, 1, NOW),
                                  rows.budget_row(dict(budget, id="gone", deleted=True), 0, 2, NOW)])
    alert = {"alert_id": "a1", "kind": "threshold", "scope": "agent:alpha", "budget_id": "b", "threshold_percent": 80,
             "action": "alert", "metric": "cost_micro_usd", "spent": 1, "limit": 2, "window_start": None,
             "window_end": None, "event_id": None, "created_at": NOW - 60_000, "message": "80% of b"}
    store(history, rows.ALERTS, [rows.alert_row(alert), rows.alert_row(dict(alert, alert_id="old",
                                                                            created_at=NOW - 5 * DAY))])
    return runner(history)


def as_dicts(result):
    return [dict(zip(result["columns"], row)) for row in result["rows"]]


def test_top_spenders_over_a_day_and_a_week(known):
    day = as_dicts(reports.top(known, Period.parse("24h", now_ms=NOW)))
    assert [(r["scope"], r["amount"], r["calls"]) for r in day] == [("agent:alpha", 3_000_000, 3),
                                                                  ("agent:beta", 500_000, 1)]
    week = reports.top(known, Period.parse("7d", now_ms=NOW), kind="team", limit=1)
    assert [r[:2] for r in week["rows"]] == [["team:acme/search", 10_000_000]]


def test_spend_by_scope_pattern_and_per_hour(known):
    teams = as_dicts(reports.spend(known, Period.parse("24h", now_ms=NOW), "team:acme/*"))
    assert {r["scope"]: r["usd"] for r in teams} == {"team:acme/search": 3.0, "team:acme/ads": 0.5}
    hourly = as_dicts(reports.spend(known, Period.parse("24h", now_ms=NOW), "agent", every="hour"))
    assert [(r["scope"], r["calls"]) for r in hourly] == [("agent:beta", 1), ("agent:alpha", 3)]
    tag = as_dicts(reports.spend(known, Period.parse("7d", now_ms=NOW), "tag:env=prod"))
    assert [(r["scope"], r["micro_usd"]) for r in tag] == [("tag:env=prod", 10_500_000)]


def test_run_scopes_come_from_the_raw_events(known):
    day = Period.parse("24h", now_ms=NOW)
    assert [r[:2] for r in reports.top(known, day, kind="run")["rows"]] == [["run:run-alpha", 3_000_000],
                                                                          ["run:run-beta", 500_000]]
    one = as_dicts(reports.spend(known, Period.parse("7d", now_ms=NOW), "run:run-gamma"))
    assert [(r["scope"], r["calls"], r["micro_usd"]) for r in one] == [("run:run-gamma", 1, 7_000_000)]
    assert reports.spend(known, day, "run:run-gamma")["rows"] == []  # three days ago: not in the last 24 h


def test_spend_by_model_and_provider(known):
    result = as_dicts(reports.models(known, Period.parse("7d", now_ms=NOW)))
    assert [(r["provider"], r["model"], r["micro_usd"]) for r in result] == [
        ("openai", "gpt-4o-mini", 10_000_000), ("anthropic", "claude-sonnet-4", 500_000)]


def test_budget_utilisation_in_the_current_window(known):
    result = as_dicts(reports.utilisation(known, at_ms=NOW))
    # Deleted budgets are gone; the team budget lists each team's spend today.
    today = sorted((r["scope"], r["spent"], r["limit"], r["percent"]) for r in result)
    expected_ads = 500_000 if NOW - 2 * HOUR >= TODAY else 0
    expected = [("team:acme/search", 3_000_000, 4_000_000, 75.0)]
    if expected_ads:
        expected.append(("team:acme/ads", expected_ads, 4_000_000, 12.5))
    assert today == sorted(expected)
    assert {r["budget_id"] for r in result} == {"team-day"}
    assert {r["window"] for r in result} == {"day"}


def test_alerts_log_newest_first_within_the_period(known):
    result = as_dicts(reports.alerts(known, Period.parse("24h", now_ms=NOW)))
    assert [(r["scope"], r["message"]) for r in result] == [("agent:alpha", "80% of b")]
    assert len(reports.alerts(known, Period.parse("7d", now_ms=NOW), scope="agent:*")["rows"]) == 2


@pytest.mark.parametrize("hostile", [
    "agent:x' OR '1'='1", "agent:alpha'; DROP TABLE usage_events; --", "agent:\\' UNION SELECT 1 --",
    "team:acme/search') OR 1=1 --", "agent:{prefix:String}",
])
def test_injection_attempts_in_parameters_match_nothing_and_break_nothing(known, history, hostile):
    period = Period.parse("7d", now_ms=NOW)
    assert reports.spend(known, period, hostile)["rows"] == []
    assert reports.models(known, period, hostile)["rows"] == []
    assert reports.alerts(known, period, hostile)["rows"] == []
    assert history.select("SELECT count() FROM usage_events").rows[0][0] == 5


@pytest.mark.parametrize("call, message", [
    (lambda run, p: reports.top(run, p, kind="agent) OR 1=1 --"), "--kind must be one of"),
    (lambda run, p: reports.top(run, p, metric="sum(1); DROP TABLE alerts"), "--metric must be one of"),
    (lambda run, p: reports.spend(run, p, "nope:1"), "must be 'global' or one of"),
    (lambda run, p: reports.spend(run, p, None, every="minute; DROP"), "--every must be hour or day"),
])
def test_bad_report_arguments_are_one_clear_error(known, call, message):
    with pytest.raises(ReportError, match=message):
        call(known, Period.parse("24h", now_ms=NOW))


def test_periods_and_their_rollup_grain():
    assert Period.parse("24h", now_ms=NOW).rollup()[0] == "usage_by_minute"
    assert Period.parse(start="2026-01-01", end="2026-02-01").rollup()[0] == "usage_by_day"
    assert Period.parse(start="2026-01-01T10:00", end="2026-01-01T12:00").rollup()[0] == "usage_by_hour"
    table, bounds = Period.parse("30d", now_ms=NOW).rollup()
    assert table == "usage_by_hour" and bounds["end_s"] * 1000 == NOW // HOUR * HOUR + HOUR
    for bad in ({"since": "yesterday"}, {"start": "2026-13-01"}, {"start": "2026-02-01", "end": "2026-01-01"}):
        with pytest.raises(ReportError):
            Period.parse(**bad)


def test_results_survive_the_json_of_the_sql_endpoint(known):
    json.dumps(reports.utilisation(known, at_ms=NOW), default=str)
