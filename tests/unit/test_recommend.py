"""Recommendation arithmetic: percentiles, the margin, trend, backtests, and the parent fit."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from tokenfuse.apportion import even, largest_remainder
from tokenfuse.budgets import parent as parents
from tokenfuse.budgets.recommend import (Thresholds, backtest, evidence, limit_for, margin, percentile,
                                         trend_percent_per_week)
from tokenfuse.budgets.recommender import RecommendError, Request, amount, show, validate

DAY = 86_400_000
amounts = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=60)


def test_percentiles_interpolate_between_closest_ranks():
    values = [10, 20, 30, 40, 50]
    assert percentile(values, 0.5) == 30
    assert percentile(values, 0.9) == pytest.approx(46)  # h = 3.6: 40 + 0.6 x 10
    assert percentile([50, 10, 40, 20, 30], 0.95) == pytest.approx(48)  # order does not matter
    assert percentile([7], 0.99) == 7
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_the_margin_widens_when_history_is_short_like_the_vpa_confidence_margin():
    assert margin(7, 7) == pytest.approx(1.15 * (1 + 1 / 7))
    assert margin(30, 30) == pytest.approx(1.15 * (1 + 1 / 30))
    assert margin(720, 30) == pytest.approx(1.15 * (1 + 1 / 30))  # 720 hourly windows: 30 days decide
    assert margin(7, 7) > margin(30, 30) > margin(365, 365) > 1.15
    assert margin(10, 10, safety=0) == pytest.approx(1.1)


def test_limits_round_up_and_stay_positive():
    assert limit_for(2.0, 1.5) == 3  # float noise never adds a unit
    assert limit_for(2.1, 1.0) == 3
    assert limit_for(0.0, 1.3) == 1


def test_trend_is_the_fitted_slope_in_percent_of_the_mean_per_week():
    assert trend_percent_per_week([100] * 10, DAY) == 0
    # +10 a day around a mean of 145: 70 a week = 48.3% of the mean
    assert trend_percent_per_week([100 + 10 * i for i in range(10)], DAY) == pytest.approx(70 / 145 * 100)
    assert trend_percent_per_week([0, 0, 0], DAY) == 0


def test_backtest_counts_warned_and_blocked_windows_and_unused_budget():
    result = backtest([50, 79, 80, 99, 100, 150], 100, Thresholds(80, 100))
    assert (result.windows, result.warned, result.blocked) == (6, 2, 2)  # 80 and 99 warn; 100 and 150 block
    assert result.unused == 50 + 21 + 20 + 1
    assert result.unused_percent == round(100 * 92 / 600, 1)


def test_evidence_offers_every_percentile_with_its_backtest():
    values = [1_000_000 + 50_000 * (i % 5) for i in range(20)]
    proof = evidence("team:acme/search", values, DAY, Thresholds())
    assert [o.name for o in proof.options] == ["p50", "p90", "p95", "p99"]
    assert [o.limit for o in proof.options] == sorted(o.limit for o in proof.options)
    p90 = proof.option("p90")
    assert p90.limit == limit_for(percentile(values, 0.9), margin(20, 20))
    assert p90.backtest == backtest(values, p90.limit, Thresholds())
    assert (proof.windows, proof.history_days) == (20, 20)


@given(amounts, st.integers(min_value=1, max_value=10**12), st.integers(min_value=1, max_value=10**12))
def test_a_higher_limit_never_blocks_more_nor_leaves_less_unused(values, a, b):
    low, high = sorted((a, b))
    t = Thresholds(80, 100)
    lo, hi = backtest(values, low, t), backtest(values, high, t)
    assert hi.blocked <= lo.blocked and hi.unused >= lo.unused
    assert lo.blocked == sum(v >= low for v in values)
    assert lo.unused == sum(max(low - v, 0) for v in values)
    assert lo.blocked + lo.warned == sum(v * 100 >= 80 * low for v in values) <= len(values)


@given(amounts)
def test_above_every_window_nothing_blocks_and_the_unused_budget_is_the_rest(values):
    limit = max(values) + 1
    result = backtest(values, limit, Thresholds(80, 100))
    assert result.blocked == 0 and result.unused == limit * len(values) - sum(values)


@given(st.integers(min_value=0, max_value=10**15), st.lists(st.integers(min_value=0, max_value=10**12), min_size=1,
                                                             max_size=40))
def test_largest_remainder_shares_add_up_exactly_and_stay_within_a_unit_of_their_quota(total, weights):
    shares = largest_remainder(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)
    whole = sum(weights) or len(weights)
    for share, weight in zip(shares, weights if sum(weights) else [1] * len(weights)):
        assert total * weight // whole <= share <= -(-total * weight // whole)


def test_even_split_differs_by_at_most_one():
    assert even(10, 3) == [4, 3, 3]
    assert even(0, 2) == [0, 0]
    with pytest.raises(ValueError):
        largest_remainder(5, [])


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(min_value=1, max_value=10**12), min_size=1,
                       max_size=30), st.integers(min_value=1, max_value=10**13))
def test_children_never_sum_above_the_parent_and_never_grow(limits, parent_limit):
    if len(limits) > parent_limit:
        with pytest.raises(parents.ParentError):
            parents.fit(limits, parent_limit)
        return
    fitted = parents.fit(limits, parent_limit)
    assert set(fitted) == set(limits)
    assert sum(fitted.values()) <= parent_limit
    assert all(1 <= fitted[k] <= limits[k] for k in limits)
    if sum(limits.values()) <= parent_limit:
        assert fitted == limits
    else:
        assert sum(fitted.values()) == parent_limit


def test_scaling_is_proportional():
    assert parents.fit({"team:a/x": 600, "team:a/y": 300, "team:a/z": 100}, 500) == {
        "team:a/x": 300, "team:a/y": 150, "team:a/z": 50}
    assert parents.fit({"a": 1, "b": 1000}, 10) == {"a": 1, "b": 9}  # the tiny one keeps 1


def test_which_parent_contains_which_child():
    assert parents.parent_key("team:acme/search", "org:acme") == "org:acme"
    assert parents.parent_key("team:other/search", "org:acme") is None
    assert parents.parent_key("team:other/search", "org:*") == "org:other"
    assert parents.parent_key("agent:bot-1", "global") == "global"
    with pytest.raises(parents.ParentError, match="cannot tell which 'team:acme/search' contains 'agent:bot-1'"):
        parents.parent_key("agent:bot-1", "team:acme/search")


def budget(id_, scope, limit, metric="cost_micro_usd", window="day"):
    return {"id": id_, "scope": scope, "metric": metric, "window": window, "timezone": "UTC", "limit": limit}


def test_auto_finds_the_org_budget_before_a_global_one_with_the_same_metric_and_window():
    budgets = {b["id"]: b for b in (budget("all", "global", 100), budget("acme", "org:acme", 50),
                                    budget("acme-tokens", "org:acme", 5, metric="total_tokens"),
                                    budget("acme-month", "org:acme", 900, window="month"))}
    children = ["team:acme/a", "team:acme/b", "team:beta/c"]
    found = parents.find_parents(budgets, children, "cost_micro_usd", "day", "UTC", "auto")
    assert [(b["id"], groups) for b, groups in found] == [("acme", {"org:acme": ["team:acme/a", "team:acme/b"]})]
    found = parents.find_parents(budgets, ["agent:x"], "cost_micro_usd", "day", "UTC", "auto")
    assert [(b["id"], groups) for b, groups in found] == [("all", {"global": ["agent:x"]})]
    assert parents.find_parents(budgets, children, "cost_micro_usd", "1h", "UTC", "auto") == []
    with pytest.raises(parents.ParentError, match="'acme-month' counts cost_micro_usd per month"):
        parents.find_parents(budgets, children, "cost_micro_usd", "day", "UTC", "acme-month")
    with pytest.raises(parents.ParentError, match="no budget with id 'nope'"):
        parents.find_parents(budgets, children, "cost_micro_usd", "day", "UTC", "nope")


@pytest.mark.parametrize("changes, message", [
    ({"metric": "dollars"}, "--metric must be one of"),
    ({"option": "p75"}, "--option must be one of"),
    ({"thresholds": Thresholds(100, 80)}, "1 <= warn < block"),
    ({"min_windows": 1}, "--min-windows must be at least 2"),
    ({"parent": "org-day", "parent_limit": "10"}, "exclusive"),
    ({"id_prefix": "a b"}, "--id-prefix may only contain"),
])
def test_bad_arguments_are_one_clear_error(changes, message):
    request = Request(scope="team:*", window="day", metric="cost_usd", lookback="30d")
    with pytest.raises(RecommendError, match=message):
        validate(Request(**{**request.__dict__, **changes}))


def test_limits_given_on_the_command_line_are_in_the_files_unit():
    assert amount("12.5", "cost_usd", "--parent-limit") == 12_500_000
    assert amount("1000", "total_tokens", "--parent-limit") == 1000
    for bad, metric in (("0.0000001", "cost_usd"), ("-3", "cost_usd"), ("1.5", "total_tokens"), ("abc", "cost_usd")):
        with pytest.raises(RecommendError, match="--parent-limit must be"):
            amount(bad, metric, "--parent-limit")
    assert show(12_500_000, "cost_usd") == "12.5" and show(3_000_000, "cost_usd") == "3"
    assert show(1234.4, "total_tokens") == "1,234"


def test_recommended_ids_are_valid_budget_ids():
    request = Request(scope="tag:env=*", window="day", metric="cost_usd", lookback="30d")
    assert request.budget_id("tag:env=prod") == "rec-tag:env.prod-day-cost"
    assert request.budget_id("team:acme/search") == "rec-team:acme.search-day-cost"
