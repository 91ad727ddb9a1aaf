"""The autopilot's decisions, case by case: what bounds a raise, holds, approvals that come too
late, expiries, shrinks, and an operator's version winning over a raise."""

from __future__ import annotations

from tokenfuse.autopilot.book import Book
from tokenfuse.autopilot.pilot import Pilot
from tokenfuse.autopilot.policy import Policy, Raise, Rule, Shrink

HOUR = 3_600_000
T0 = 1_790_002_800_000  # a whole hour


def budget(budget_id: str, scope: str, limit: int, updated_at: int = 1) -> dict:
    return {"id": budget_id, "scope": scope, "metric": "total_tokens", "window": "1h", "timezone": "UTC",
            "limit": limit, "thresholds": [{"percent": 100, "action": "block"}], "description": "ops",
            "updated_at": updated_at}


def rule(budget_id: str, **changes) -> Rule:
    fields = dict(budget=budget_id, floor=500, cap=5_000, max_step=2_000, cooldown_ms=HOUR, mode="auto",
                  parent="org", raise_=Raise(10), shrink=Shrink(2, 50))
    return Rule(**{**fields, **changes})


def pilot(*rules: Rule, org: int = 10_000, **limits: int) -> Pilot:
    budgets = {"org": budget("org", "org:acme", org)}
    budgets.update({name: budget(name, f"agent:{name}", limit) for name, limit in limits.items()})
    return Pilot(Policy(rules), Book(budgets=budgets))


def forecast(budget_id: str, projected: int, at: int, n: int = 1) -> dict:
    start = at - at % HOUR
    return {"kind": "forecast", "alert_id": f"{budget_id}|{start}|forecast|{n}", "budget_id": budget_id,
            "scope": f"agent:{budget_id}", "window_start": start, "window_end": start + HOUR, "projected": projected,
            "eta_p50": at + 60_000, "burn_rate_per_hour": 100.0}


def test_a_raise_goes_to_the_forecast_plus_margin_unless_the_parents_headroom_is_smaller():
    p = pilot(rule("a"), rule("b"), org=4_000, a=1_000, b=2_000)
    [raised] = p.alert(forecast("a", 1_500, T0 + 1), T0 + 1)
    assert (raised.decision.status, raised.decision.new_limit) == ("applied", 1_650)  # 1500 + 10%
    assert raised.budget["limit"] == 1_650 and "[autopilot " in raised.budget["description"]
    assert raised.budget["description"].startswith("ops [autopilot ")
    [bounded] = p.alert(forecast("b", 9_000, T0 + 2), T0 + 2)
    assert bounded.decision.new_limit == 2_350 and "parent org's headroom" in bounded.decision.reason  # 4000 - 1650


def test_a_budget_flagged_by_a_loop_is_never_raised_in_that_window_and_may_be_after():
    p = pilot(rule("a"), a=1_000)
    [hold] = p.alert({"kind": "loop", "alert_id": "a|run:r|loop|f|5", "budget_id": "a", "scope": "run:r"}, T0 + 1)
    assert hold.decision.status == "held" and hold.decision.window_end == T0 + HOUR
    [refused] = p.alert(forecast("a", 3_000, T0 + 2), T0 + 2)
    assert refused.decision.status == "refused" and refused.budget is None
    assert refused.decision.reason.startswith("held: loop alert a|run:r|loop|f|5")
    [next_window] = p.alert(forecast("a", 3_000, T0 + HOUR + 1), T0 + HOUR + 1)
    assert next_window.decision.status == "applied"
    old = {"kind": "spike", "alert_id": "a|spike|old", "budget_id": "a", "scope": "agent:a", "created_at": T0 + 5}
    assert p.alert(old, T0 + HOUR + 2) == []  # read again after its window: holds nothing


def test_an_approval_after_the_window_ended_is_refused_and_a_timely_one_is_rebounded():
    p = pilot(rule("a", mode="approve"), rule("b"), org=4_000, a=1_000, b=1_000)
    [proposed] = p.alert(forecast("a", 5_000, T0 + 1), T0 + 1)
    assert (proposed.decision.status, proposed.decision.new_limit) == ("proposed", 3_000)
    late = proposed.decision.next(status="approved", approved_by="bob", approved_at=T0 + HOUR + 5)
    [refused] = p.decision(late, T0 + HOUR + 5)
    assert refused.decision.status == "refused" and "after its window ended" in refused.decision.reason
    assert p.book.budgets["a"]["limit"] == 1_000

    q = pilot(rule("a", mode="approve"), rule("b"), org=4_000, a=1_000, b=1_000)
    [proposed] = q.alert(forecast("a", 5_000, T0 + 1), T0 + 1)
    q.alert(forecast("b", 2_000, T0 + 2), T0 + 2)  # b takes 1200 of the org's headroom meanwhile
    [applied] = q.decision(proposed.decision.next(status="approved", approved_by="bob", approved_at=T0 + 3), T0 + 3)
    assert (applied.decision.status, applied.decision.new_limit, applied.decision.approved_by) == ("applied", 1_800, "bob")
    assert q.decision(applied.decision, T0 + 4) == []  # read back: nothing new


def test_a_raise_ends_with_its_window_children_first_and_a_parent_never_under_its_children():
    p = pilot(rule("org", parent="top", floor=1_000, cap=50_000, max_step=10_000), rule("a", cap=9_000, max_step=8_000),
              org=3_000, a=2_000, top=100_000)
    p.book.budgets["top"] = budget("top", "global", 100_000)
    [org_up] = p.alert({**forecast("org", 8_000, T0 + 1), "scope": "org:acme"}, T0 + 1)
    assert org_up.decision.new_limit == 8_800
    [a_up] = p.alert(forecast("a", 6_000, T0 + 2), T0 + 2)
    assert a_up.decision.new_limit == 6_600
    assert p.tick(T0 + HOUR - 1) == []
    first, second = p.tick(T0 + HOUR)
    assert (first.decision.budget_id, first.decision.kind, first.decision.new_limit) == ("a", "expire", 2_000)
    assert (second.decision.budget_id, second.decision.new_limit) == ("org", 3_000)
    assert p.tick(T0 + HOUR + 1) == []


def test_idle_windows_shrink_toward_the_recommendation_by_at_most_a_step_and_not_during_a_raise():
    p = pilot(rule("a", max_step=1_000), a=4_000)
    assert p.idle("a", [100, 2_500], 800, T0 - HOUR, T0 + 1) == []  # 2500 is not under 50% of 4000
    [shrunk] = p.idle("a", [100, 1_900], 800, T0 - HOUR, T0 + 1)
    assert (shrunk.decision.kind, shrunk.decision.new_limit) == ("shrink", 3_000)
    assert p.idle("a", [100, 1_900], 800, T0 - HOUR, T0 + 2) == []  # the same window: decided already
    q = pilot(rule("a"), a=1_000)
    q.alert(forecast("a", 2_000, T0 + 1), T0 + 1)
    assert q.idle("a", [1, 1], None, T0, T0 + 2 * HOUR - 1) == []


def test_an_operators_new_version_wins_over_a_raise_and_leaves_nothing_to_expire():
    p = pilot(rule("a"), a=1_000)
    p.alert(forecast("a", 2_000, T0 + 1), T0 + 1)
    assert p.book.active_raise("a") is not None
    p.book.merge_budget(budget("a", "agent:a", 1_200, updated_at=T0 + 10))
    assert p.book.active_raise("a") is None and p.book.base_limit("a") == 1_200
    assert p.tick(T0 + HOUR) == []


def test_budgets_over_a_pattern_or_in_another_unit_are_refused_not_raised():
    p = pilot(rule("a"), rule("u", unit="usd"), a=1_000, u=1_000)
    p.book.budgets["a"]["scope"] = "agent:*"
    [pattern] = p.alert({**forecast("a", 2_000, T0 + 1), "scope": "agent:*"}, T0 + 1)
    assert pattern.decision.status == "refused" and "is a pattern" in pattern.decision.reason
    [unit] = p.alert(forecast("u", 2_000, T0 + 1), T0 + 1)
    assert unit.decision.status == "refused" and "in USD" in unit.decision.reason
