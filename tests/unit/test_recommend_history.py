"""Recommendations read from known history in the embedded ClickHouse: windows, zeros, too-short
scopes, the parent fit, and a budgets file that the budgets loader accepts as is."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.history_helpers import chdb_settings, history, runner  # noqa: F401 - fixtures
from tokenfuse.budgets.recommend import Thresholds, percentile
from tokenfuse.budgets.recommend_yaml import render
from tokenfuse.budgets.recommender import RecommendError, Request, recommend
from tokenfuse.budgets.spec import load_budgets
from tokenfuse.history import rows
from tokenfuse.history.reports import ReportError
from tokenfuse.history.store import Pending, write
from tokenfuse.history.window_spend import complete_windows, spend_per_window
from tokenfuse.usage.pricing import PriceCatalog

HOUR, DAY = 3_600_000, 86_400_000
NOW = 1_795_000_000_000 // DAY * DAY + 5 * HOUR  # 05:00 UTC on a fixed day
TODAY = NOW // DAY * DAY
# Per team, cost per day d days ago (d = 1 is yesterday): search every day of 20, ads with a
# quiet day, new only for 3 days, and today's partial day that no recommendation may count.
SEARCH = {d: 1_000_000 + 100_000 * (d % 4) for d in range(1, 21)}
ADS = {d: 400_000 for d in range(1, 11) if d != 5}
NEW = {d: 900_000 for d in range(1, 4)}


def usage(team, cost, when, tags=None):
    return {"event_id": str(uuid.uuid4()), "event_time": when, "org": "acme", "team": team, "agent": f"bot-{team}",
            "run": None, "user": None, "model": "gpt-4o-mini", "provider": "openai", "input_tokens": 10,
            "output_tokens": 5, "cached_tokens": 0, "cost_micro_usd": cost, "tags": tags or {}}


@pytest.fixture
def seeded(history):
    catalog = PriceCatalog.load()
    events = [usage("search", cost // 2, TODAY - d * DAY + h * HOUR) for d, cost in SEARCH.items() for h in (1, 20)]
    events += [usage(team, cost, TODAY - d * DAY + 12 * HOUR) for team, days in (("ads", ADS), ("new", NEW))
               for d, cost in days.items()]
    events.append(usage("search", 50_000_000, TODAY + HOUR))  # today: not a complete window
    pending = Pending(rows.USAGE)
    for n, event in enumerate(events):
        pending.add(rows.usage_row(event, catalog, 0, n), "t", 0, n)
    write(history, pending)
    return runner(history)


def test_complete_windows_of_a_lookback():
    days = complete_windows("day", "UTC", 30 * DAY, NOW)
    assert (len(days.starts), days.starts[0], days.end) == (30, TODAY - 30 * DAY, TODAY)
    hours = complete_windows("1h", "UTC", DAY, NOW)
    assert (len(hours.starts), hours.end) == (24, NOW)
    paris = complete_windows("day", "Europe/Paris", 3 * DAY, NOW)
    assert (len(paris.starts), paris.end) == (3, TODAY - HOUR)  # midnight in Paris (UTC+1 in November)
    for window, lookback, message in (("rolling:60s", DAY, "not rolling"), ("30s", DAY, "not whole minutes"),
                                      ("day", 12 * HOUR, "no complete day window"), ("fortnight", DAY, "--window")):
        with pytest.raises(ReportError, match=message):
            spec = complete_windows(window, "UTC", lookback, NOW)
            spend_per_window(lambda q, p: {"rows": []}, "team:*", "cost_micro_usd", spec)
    with pytest.raises(ReportError, match="kept 35 days"):
        spend_per_window(lambda q, p: {"rows": []}, "team:*", "cost_micro_usd",
                         complete_windows("5m", "UTC", 40 * DAY, NOW))


def test_spend_per_window_fills_quiet_windows_with_zero_from_the_first_usage_on(seeded):
    windows = complete_windows("day", "UTC", 30 * DAY, NOW)
    series = spend_per_window(seeded, "team:*", "cost_micro_usd", windows)
    assert series["team:acme/search"] == [SEARCH[d] // 2 * 2 for d in range(20, 0, -1)]
    assert series["team:acme/ads"] == [ADS.get(d, 0) for d in range(10, 0, -1)]
    assert series["team:acme/new"] == [900_000] * 3
    tokens = spend_per_window(seeded, "team:acme/ads", "total_tokens", windows)
    assert tokens == {"team:acme/ads": [0 if d == 5 else 15 for d in range(10, 0, -1)]}
    with pytest.raises(ReportError, match="runs are not rolled up"):
        spend_per_window(seeded, "run:*", "cost_micro_usd", windows)


def test_recommend_skips_short_histories_and_fits_children_under_the_org_budget(seeded, tmp_path):
    org = {"id": "org-day", "scope": "org:acme", "metric": "cost_micro_usd", "window": "day", "timezone": "UTC",
           "limit": 1_500_000, "thresholds": [{"percent": 100, "action": "block"}], "description": "",
           "updated_at": 0}
    request = Request(scope="team:*", window="day", metric="cost_usd", lookback="30d", thresholds=Thresholds(80, 100))
    result = recommend(seeded, request, {"org-day": org}, NOW)
    assert result.too_short == {"team:acme/new": 3}
    by_scope = {e.evidence.scope: e for e in result.entries}
    assert sorted(by_scope) == ["team:acme/ads", "team:acme/search"]
    search = by_scope["team:acme/search"]
    assert search.chosen.percentile == pytest.approx(percentile([c // 2 * 2 for c in SEARCH.values()], 0.9))
    assert search.evidence.windows == 20 and by_scope["team:acme/ads"].evidence.windows == 10
    # Recommended sum above 1.5 USD: scaled down to exactly the parent's limit.
    assert sum(e.chosen.limit for e in result.entries) > 1_500_000
    assert sum(e.limit for e in result.entries) == 1_500_000
    assert all(e.parent == "budget org-day (org:acme)" for e in result.entries)
    assert "scaled by" in result.fits[0]

    path = tmp_path / "recommended.yaml"
    path.write_text(render(result, "tokenfuse budgets recommend --scope team:*", NOW))
    loaded = {b["id"]: b for b in load_budgets(path)}
    assert sorted(loaded) == ["org-day", "rec-team:acme.ads-day-cost", "rec-team:acme.search-day-cost"]
    assert loaded["org-day"]["limit"] == 1_500_000  # kept: apply must not delete it
    assert loaded["rec-team:acme.search-day-cost"]["limit"] == search.limit
    assert loaded["rec-team:acme.search-day-cost"]["thresholds"] == [{"percent": 80, "action": "warn"},
                                                                     {"percent": 100, "action": "block"}]
    text = path.read_text()
    assert "# not recommended, too little history: team:acme/new (3 windows < 7)" in text
    assert "p90" in text and "<- written" in text and "trend" in text


def test_overcommit_when_asked_and_an_explicit_parent_limit(seeded):
    request = Request(scope="team:*", window="day", metric="cost_usd", lookback="30d", allow_overcommit=True,
                      parent_limit="1")
    result = recommend(seeded, request, {}, NOW)
    assert all(e.limit == e.chosen.limit for e in result.entries)
    assert "overcommitted (--allow-overcommit)" in result.fits[0]
    fitted = recommend(seeded, Request(**{**request.__dict__, "allow_overcommit": False}), {}, NOW)
    assert sum(e.limit for e in fitted.entries) == 1_000_000
    alone = recommend(seeded, Request(scope="team:*", window="day", metric="cost_usd", lookback="30d"), {}, NOW)
    assert alone.fits == ["no parent budget counts cost_micro_usd per day: limits not bounded "
                          "(give --parent-limit to bound them)"]


def test_a_budgets_file_with_nothing_to_recommend_is_still_valid(seeded, tmp_path: Path):
    request = Request(scope="team:acme/new", window="day", metric="total_tokens", lookback="30d")
    result = recommend(seeded, request, {}, NOW)
    assert result.entries == [] and result.too_short == {"team:acme/new": 3}
    path = tmp_path / "empty.yaml"
    path.write_text(render(result, "x", NOW))
    assert load_budgets(path) == []


def test_scopes_whose_ids_would_collide_are_refused(history):
    catalog = PriceCatalog.load()
    events = [usage(team, 1000, TODAY - d * DAY) for team in ("a/b", "a.b") for d in range(1, 9)]
    pending = Pending(rows.USAGE)
    for n, event in enumerate(events):
        pending.add(rows.usage_row(event, catalog, 0, n), "t", 0, n)
    write(history, pending)
    request = Request(scope="team:*", window="day", metric="total_tokens", lookback="30d")
    with pytest.raises(RecommendError, match="'team:acme/a/b' and 'team:acme/a.b' would both get the id "
                                             "'rec-team:acme.a.b-day-tokens'"):
        recommend(runner(history), request, {}, NOW)
