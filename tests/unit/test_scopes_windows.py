from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tokenfuse.usage.scopes import event_scopes, matches, pattern_of, runtime_scopes, validate_scope
from tokenfuse.usage.windows import parse_window


def ms(text: str, tz: str = "UTC") -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_an_event_counts_toward_every_scope_it_belongs_to():
    event = {"org": "acme", "team": "search", "agent": "bot", "run": "r1", "user": None, "model": "gpt-4o",
             "tags": {"env": "prod", "app": "x"}}
    assert event_scopes(event) == ["global", "org:acme", "team:acme/search", "agent:bot", "model:gpt-4o",
                                   "run:r1", "tag:app=x", "tag:env=prod"]


def test_runtime_scopes_skip_missing_values():
    assert runtime_scopes("acme", "search", "bot", run="r1") == [
        "global", "org:acme", "team:acme/search", "agent:bot", "run:r1"]


@pytest.mark.parametrize("scope, key, expected", [
    ("agent:*", "agent:bot", True), ("agent:*", "team:acme/x", False), ("agent:bot", "agent:bot", True),
    ("agent:bot", "agent:bot2", False), ("team:acme/*", "team:acme/search", True),
    ("team:acme/*", "team:other/search", False), ("tag:env=*", "tag:env=prod", True), ("global", "global", True),
])
def test_budget_scope_matching(scope, key, expected):
    assert matches(scope, key) is expected
    assert (scope in pattern_of(key)) is expected


@pytest.mark.parametrize("scope, problem", [
    ("global", None), ("agent:*", None), ("team:acme/search", None), ("tag:env=prod", None),
    ("planet:earth", "must be 'global' or one of"), ("agent:", "has no value"),
    ("team:search", "team:<org>/<team>"), ("tag:env", "tag:<key>=<value>"), ("agent:b*t", "whole value"),
])
def test_scope_validation(scope, problem):
    result = validate_scope(scope)
    assert (result is None) if problem is None else (problem in result)


def test_tumbling_window_bounds():
    w = parse_window("1h")
    assert w.bounds(ms("2026-11-28T10:59:59.999")) == (ms("2026-11-28T10:00:00"), ms("2026-11-28T11:00:00"))


def test_calendar_day_and_month_in_a_time_zone():
    day = parse_window("day", "Asia/Kolkata")  # UTC+05:30: days start at 18:30 UTC
    assert day.bounds(ms("2026-11-28T19:00:00")) == (ms("2026-11-29T00:00:00", "Asia/Kolkata"),
                                                     ms("2026-11-30T00:00:00", "Asia/Kolkata"))
    month = parse_window("month", "Europe/Paris")
    assert month.bounds(ms("2026-12-31T23:30:00")) == (ms("2027-01-01T00:00:00", "Europe/Paris"),
                                                       ms("2027-02-01T00:00:00", "Europe/Paris"))


def test_calendar_day_across_a_dst_change_is_23_hours():
    day = parse_window("day", "Europe/Paris")
    start, end = day.bounds(ms("2026-03-29T12:00:00", "Europe/Paris"))
    assert end - start == 23 * 3600 * 1000


@pytest.mark.parametrize("text, problem", [
    ("fortnight", "must be a duration"), ("0m", "must be a duration"), ("8d", "longer than 7d"),
    ("rolling:2h", "longer than 1h"), ("rolling:xs", "not a duration"),
])
def test_bad_windows_say_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_window(text)


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_window("day", "Mars/Olympus")
