"""The SDK's local ledger: counting a runtime's own spend per scope and window, and deciding at
the call (pure logic, no broker)."""

from __future__ import annotations

import logging

import pytest

from tokenfuse.errors import BudgetExceeded
from tokenfuse.sdk.ledger import Bound, LocalLedger, WindowCount, local_scopes
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.usage.windows import parse_window
from tokenfuse.worker.engine.rules import DEFAULT_THROTTLE_DELAY_MS

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR  # the start of an hour


def budget(id: str, scope: str, limit: int, metric: str = "total_tokens", window: str = "1h",
           thresholds: list | None = None) -> dict:
    return {"id": id, "scope": scope, "metric": metric, "window": window, "timezone": "UTC", "limit": limit,
            "thresholds": thresholds or [{"percent": 100, "action": "block"}]}


def event(run: str | None = "r1", input_tokens: int = 0, output_tokens: int = 0, **extra) -> dict:
    return {"org": "acme", "team": "search", "agent": "bot", "run": run, "user": None, "model": "gpt-4o",
            "provider": "openai", "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cached_tokens": 0, "cost_micro_usd": None, "tags": {}, **extra}


def ledger_with(*budgets: dict, kinds=("run",)) -> LocalLedger:
    ledger = LocalLedger(kinds)
    ledger.set_budgets(budgets)
    return ledger


def test_a_run_budget_blocks_the_call_after_the_one_that_crossed_and_no_other_run():
    ledger = ledger_with(budget("per-run", "run:*", 1000))
    for _ in range(3):
        assert ledger.check(event(), T0) == 0
        ledger.count(event(input_tokens=300, output_tokens=30), T0)
    assert ledger.check(event(), T0) == 0  # 990 of 1000
    ledger.count(event(input_tokens=5, output_tokens=5), T0 + 1)  # exactly the limit: blocks
    with pytest.raises(BudgetExceeded) as info:
        ledger.check(event(), T0 + 2)
    e = info.value
    assert (e.scope, e.budget_id, e.spent, e.limit, e.until_ms) == ("run:r1", "per-run", 1000, 1000, T0 + HOUR)
    assert ledger.check(event(run="r2"), T0 + 2) == 0
    assert ledger.check(event(run=None), T0 + 2) == 0


def test_a_new_window_starts_from_zero():
    ledger = ledger_with(budget("per-run", "run:*", 100))
    ledger.count(event(input_tokens=100), T0 + HOUR - 1)
    with pytest.raises(BudgetExceeded):
        ledger.check(event(), T0 + HOUR - 1)
    assert ledger.check(event(), T0 + HOUR) == 0


def test_each_metric_counts_its_own_part_and_cost_is_priced_when_the_event_has_none():
    catalog = PriceCatalog.load()
    ledger = LocalLedger(("run",), load_catalog=lambda: catalog)
    ledger.set_budgets([budget("in", "run:*", 10**9, "input_tokens"), budget("out", "run:*", 10**9, "output_tokens"),
                        budget("all", "run:*", 10**9, "total_tokens"), budget("usd", "run:*", 10**9, "cost_micro_usd")])
    ledger.count(event(input_tokens=1000, output_tokens=200), T0)
    ledger.count(event(input_tokens=1, output_tokens=1, cost_micro_usd=7_000), T0)
    priced = catalog.cost(event(input_tokens=1000, output_tokens=200)).micro_usd
    assert priced > 0
    got = {b: ledger.spent("run:r1", b, T0) for b in ("in", "out", "all", "usd")}
    assert got == {"in": 1001, "out": 201, "all": 1202, "usd": priced + 7_000}


def test_a_reported_cost_below_the_catalog_counts_the_catalog_as_the_worker_does():
    catalog = PriceCatalog.load()
    ledger = LocalLedger(("run",), load_catalog=lambda: catalog)
    ledger.set_budgets([budget("usd", "run:*", 10**9, "cost_micro_usd")])
    ledger.count(event(input_tokens=1_000_000, output_tokens=0, cost_micro_usd=0), T0)
    listed = catalog.cost(event(input_tokens=1_000_000, output_tokens=0)).micro_usd
    assert listed > 0 and ledger.spent("run:r1", "usd", T0) == listed


def test_budgets_on_the_same_window_share_one_count_without_counting_twice():
    ledger = ledger_with(budget("a", "run:*", 10**6), budget("b", "run:r1", 10**6))
    ledger.count(event(input_tokens=10), T0)
    assert ledger.spent("run:r1", "a", T0) == ledger.spent("run:r1", "b", T0) == 10


def test_a_changed_budget_keeps_the_count_made_so_far():
    ledger = ledger_with(budget("per-run", "run:*", 1000))
    ledger.count(event(input_tokens=600), T0)
    ledger.set_budgets([budget("per-run", "run:*", 500)])  # lowered below the spend: blocks now
    with pytest.raises(BudgetExceeded) as info:
        ledger.check(event(), T0 + 1)
    assert (info.value.spent, info.value.limit) == (600, 500)


def test_warn_logs_once_and_throttle_returns_the_kill_switch_delay(caplog):
    ledger = ledger_with(budget("steps", "run:*", 100, thresholds=[
        {"percent": 50, "action": "warn"}, {"percent": 80, "action": "throttle"}, {"percent": 100, "action": "block"}]))
    ledger.count(event(input_tokens=50), T0)
    with caplog.at_level(logging.WARNING):
        assert ledger.check(event(), T0) == 0
        assert ledger.check(event(), T0) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "tokenfuse: run:r1: budget steps: local count 50 of 100 total_tokens in window 1h"]
    ledger.count(event(input_tokens=30), T0)
    assert ledger.check(event(), T0) == DEFAULT_THROTTLE_DELAY_MS


def test_a_call_whose_declared_bound_would_cross_is_refused_one_that_fits_is_not():
    ledger = ledger_with(budget("out", "run:*", 1000, "output_tokens"), budget("all", "run:*", 5000))
    ledger.count(event(input_tokens=100, output_tokens=900), T0)
    assert ledger.check(event(), T0, Bound("gpt-4o", output_tokens=100)) == 0  # lands exactly on 1000
    with pytest.raises(BudgetExceeded) as info:
        ledger.check(event(), T0, Bound("gpt-4o", output_tokens=101))
    assert (info.value.budget_id, info.value.spent) == ("out", 900)
    assert "may spend up to 101 more" in info.value.reason
    with pytest.raises(BudgetExceeded) as info:  # input estimate + max output against total_tokens
        ledger.check(event(), T0, Bound("gpt-4o", input_tokens=3950, output_tokens=60))
    assert info.value.budget_id == "all"


def test_a_budget_without_a_block_threshold_never_refuses_a_call():
    ledger = ledger_with(budget("soft", "run:*", 10, thresholds=[{"percent": 100, "action": "warn"}]))
    assert ledger.check(event(), T0, Bound("gpt-4o", output_tokens=10**6)) == 0


def test_only_run_scopes_and_the_declared_kinds_are_enforced_locally():
    agent_budget = budget("bot", "agent:bot", 100)
    shared = ledger_with(agent_budget)  # the agent may run in many processes: the worker decides
    shared.count(event(input_tokens=500), T0)
    assert shared.check(event(), T0) == 0
    assert shared.watched == frozenset()

    sole = ledger_with(agent_budget, budget("team", "team:acme/*", 100), kinds=("run", "agent"))
    sole.count(event(input_tokens=500), T0)
    with pytest.raises(BudgetExceeded) as info:
        sole.check(event(run=None), T0)
    assert info.value.scope == "agent:bot"
    assert sole.watched == frozenset({"agent"})


def test_local_scopes_names_each_kind_of_an_event():
    kinds = frozenset({"run", "agent", "team", "org", "user", "model", "tag", "global"})
    got = local_scopes(event(user="u1", tags={"env": "prod"}), kinds)
    assert sorted(got) == sorted(["run:r1", "agent:bot", "team:acme/search", "org:acme", "user:u1",
                                  "model:gpt-4o", "tag:env=prod", "global"])
    assert local_scopes(event(), frozenset({"run"})) == ["run:r1"]
    assert local_scopes(event(), frozenset()) == []


def test_a_rolling_window_forgets_spend_older_than_its_size():
    count = WindowCount(parse_window("rolling:60s"))
    count.add(T0, [10, 0, 0, 0, 1])
    count.add(T0 + 30_000, [5, 0, 0, 0, 1])
    assert count.current(T0 + 30_000).totals[0] == 15
    assert count.current(T0 + 60_000).totals[0] == 5  # the first bucket left the last 60 s
    assert count.current(T0 + 95_000).totals[0] == 0
    assert count.expired(T0 + 90_000)


def test_a_tumbling_window_counts_into_the_worker_state_and_moves_on_at_its_end():
    spec = parse_window("1h")
    count = WindowCount(spec)
    for ts in (T0, T0 + 1, T0 + HOUR - 1, T0 + HOUR, T0 + HOUR + 5):
        count.add(ts, [1, 2, 0, 3, 1])
    assert count.current(T0 + 10).totals == [3, 6, 0, 9, 3]
    assert count.current(T0 + HOUR + 10).totals == [2, 4, 0, 6, 2]


def test_a_calendar_window_follows_its_time_zone():
    spec = parse_window("day", "Asia/Tokyo")
    count = WindowCount(spec)
    count.add(T0, [7, 0, 0, 0, 1])
    start, end = spec.bounds(T0)
    assert (count.current(end - 1).start, count.current(end - 1).totals[0]) == (start, 7)
    assert count.current(end).totals[0] == 0


def test_the_sweep_forgets_ended_windows_and_caps_the_scopes_it_keeps(caplog):
    ledger = LocalLedger(("run",), max_scopes=100)
    ledger.set_budgets([budget("per-run", "run:*", 10**6)])
    for i in range(150):
        ledger.count(event(run=f"r{i}", input_tokens=1), T0 + i)
    with caplog.at_level(logging.WARNING):
        ledger.count(event(run="late", input_tokens=1), T0 + 20_000)  # sweep time: over the cap
    assert len(ledger._counts) <= 100
    assert ledger.spent("run:r149", "per-run", T0 + 20_000) == 1  # the most recent survive
    assert ledger.spent("run:r0", "per-run", T0 + 20_000) == 0
    assert "forgets" in caplog.text
    ledger.count(event(run="next-hour", input_tokens=1), T0 + HOUR + 20_000)
    assert len(ledger._counts) == 1  # every other window ended
