"""Budget comparison logic: thresholds, once-per-window firing, the enforcement ladder."""

from __future__ import annotations

from tokenfuse.worker.decisions import control_state, evaluate
from tokenfuse.worker.engine import BudgetIndex, effective, enforcement, new_crossings
from tokenfuse.worker.totals import Delta, DeltaBatch, Totals
from tokenfuse.worker.validate import validate_usage

LADDER = [{"percent": 50, "action": "alert"}, {"percent": 80, "action": "warn"},
          {"percent": 90, "action": "throttle"}, {"percent": 100, "action": "block"}]


def budget(**kw):
    return {"id": "b1", "scope": "agent:*", "metric": "total_tokens", "window": "1h", "timezone": "UTC",
            "limit": 1000, "thresholds": LADDER, **kw}


def test_thresholds_cross_on_the_update_that_reaches_them_and_fire_once():
    b = budget()
    assert new_crossings(b, 499, 0) == []
    assert [t["percent"] for t in new_crossings(b, 500, 0)] == [50]
    assert [t["percent"] for t in new_crossings(b, 1000, 50)] == [80, 90, 100]
    assert new_crossings(b, 5000, 100) == []


def test_enforcement_ladder_follows_spend_and_the_current_limit():
    assert [enforcement(budget(), s) for s in (0, 500, 800, 900, 999, 1000)] == [
        "allow", "allow", "warn", "throttle", "throttle", "block"]
    # Raising the limit above the spend releases; lowering it below blocks.
    assert enforcement(budget(limit=2000), 1000) == "allow"
    assert enforcement(budget(limit=500), 1000) == "block"


def test_evaluate_records_fired_thresholds_in_the_window_totals():
    from tokenfuse.windows import parse_window
    from tokenfuse.worker.engine import ActiveBudget

    active = ActiveBudget(budget(), parse_window("1h"))
    totals = Totals(input_tokens=500, output_tokens=300, fired={})
    alerts, entry = evaluate(active, "agent:bot", totals, 0, 3_600_000, "e9", now_ms=10)
    assert [a["threshold_percent"] for a in alerts] == [50, 80]
    assert alerts[1]["alert_id"] == "b1|agent:bot|0|80" and alerts[1]["event_id"] == "e9"
    assert entry["state"] == "warn" and entry["until"] == 3_600_000 and entry["spent"] == 800
    again, _ = evaluate(active, "agent:bot", totals, 0, 3_600_000, "e10", now_ms=11)
    assert again == []


def test_effective_state_is_the_most_severe_unexpired_entry():
    entries = {"a": {"state": "warn", "until": 100, "budget_id": "a"},
               "b": {"state": "block", "until": 50, "budget_id": "b"},
               "c": {"state": "allow", "until": 500, "budget_id": "c"}}
    assert effective(entries, now_ms=10)["budget_id"] == "b"
    assert effective(entries, now_ms=60)["budget_id"] == "a"
    assert effective(entries, now_ms=100) is None
    assert control_state("agent:x", None, 1)["state"] == "allow"


def test_budget_index_finds_exact_and_wildcard_budgets_and_rejects_bad_ones():
    index = BudgetIndex([budget(id="each"), budget(id="one", scope="agent:bot"),
                         budget(id="team", scope="team:acme/*"), budget(id="bad", window="fortnight")])
    assert sorted(b.id for b in index.for_scope("agent:bot")) == ["each", "one"]
    assert [b.id for b in index.for_scope("team:acme/search")] == ["team"]
    assert "bad" in index.rejected and "fortnight" in index.rejected["bad"]


def test_delta_batch_folds_a_burst_into_one_delta_per_scope_and_second():
    batch = DeltaBatch()
    for i in range(3):
        event = {"event_id": f"e{i}", "event_time": 1_000_500 + i, "input_tokens": 10, "output_tokens": 1,
                 "cached_tokens": 0}
        batch.add(event, ["global", "agent:a"], cost=7)
    assert len(batch.deltas) == 2
    d = batch.deltas[("agent:a", 1_000_000)]
    assert (d.input_tokens, d.output_tokens, d.cost_micro_usd, d.events, d.last_event_id) == (30, 3, 21, 3, "e2")
    assert Delta.from_json(d.to_json()) == d
    assert Totals().plus(d).metric("total_tokens") == 33


def test_validation_rejects_absurd_usage():
    import pytest

    from tokenfuse.errors import DecodeError

    good = {"event_id": "e", "org": "o", "team": "t", "agent": "a", "model": "m", "input_tokens": 5,
            "output_tokens": 5, "cached_tokens": 0, "cost_micro_usd": None, "event_time": 1_000}
    validate_usage(good, now_ms=2_000)
    for change, reason in [({"input_tokens": -1}, "negative"), ({"output_tokens": 10**12}, "absurd"),
                           ({"cached_tokens": 6}, "exceeds"), ({"agent": ""}, "agent"),
                           ({"event_time": 10**13}, "event_time"), ({"cost_micro_usd": -5}, "cost")]:
        with pytest.raises(DecodeError, match=reason):
            validate_usage({**good, **change}, now_ms=2_000)
