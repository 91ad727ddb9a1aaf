"""Budget comparison logic: thresholds, once-per-window firing, the enforcement ladder."""

from __future__ import annotations

from tokenfuse.usage.windows import parse_window
from tokenfuse.kafka.partitions import scope_partition
from tokenfuse.usage.windows import Window
from tokenfuse.worker.engine.deltas import Delta, DeltaBatch, decode_message
from tokenfuse.worker.engine.record import Enforcement, ScopeRecord
from tokenfuse.worker.engine.rules import ActiveBudget, BudgetIndex, control_state, effective, enforcement, evaluate
from tokenfuse.usage.validate import validate_usage

LADDER = [{"percent": 50, "action": "alert"}, {"percent": 80, "action": "warn"},
          {"percent": 90, "action": "throttle"}, {"percent": 100, "action": "block"}]


def budget(**kw):
    return {"id": "b1", "scope": "agent:*", "metric": "total_tokens", "window": "1h", "timezone": "UTC",
            "limit": 1000, "thresholds": LADDER, **kw}


def fire(b, spent, record, start=0):
    active = ActiveBudget(b, parse_window(b["window"]))
    alerts, entry = evaluate(active, "agent:bot", Window(start, start + 3_600_000, [spent, 0, 0, 0, 1]), record,
                             "e", now_ms=1)
    return [a["threshold_percent"] for a in alerts], entry


def test_thresholds_cross_on_the_update_that_reaches_them_and_fire_once_per_window():
    record = ScopeRecord()
    assert fire(budget(), 499, record)[0] == []
    assert fire(budget(), 500, record)[0] == [50]
    assert fire(budget(), 1000, record)[0] == [80, 90, 100]
    assert fire(budget(), 5000, record)[0] == []
    assert fire(budget(), 600, record, start=3_600_000)[0] == [50]  # a new window re-arms


def test_rolling_thresholds_re_arm_when_spend_falls_back():
    record = ScopeRecord()
    rolling = budget(window="rolling:60s")
    assert fire(rolling, 800, record)[0] == [50, 80]
    assert fire(rolling, 900, record)[0] == [90]
    assert fire(rolling, 100, record)[0] == []
    assert fire(rolling, 850, record)[0] == [50, 80]


def test_enforcement_ladder_follows_spend_and_the_current_limit():
    assert [enforcement(budget(), s) for s in (0, 500, 800, 900, 999, 1000)] == [
        "allow", "allow", "warn", "throttle", "throttle", "block"]
    # Raising the limit above the spend releases; lowering it below blocks.
    assert enforcement(budget(limit=2000), 1000) == "allow"
    assert enforcement(budget(limit=500), 1000) == "block"


def test_evaluate_gives_alert_ids_and_an_entry_until_the_window_end():
    alerts, _ = fire(budget(), 800, ScopeRecord())
    record = ScopeRecord()
    active = ActiveBudget(budget(), parse_window("1h"))
    alerts, entry = evaluate(active, "agent:bot", Window(0, 3_600_000, [500, 300, 0, 0, 2]), record, "e9", 10)
    assert [a["alert_id"] for a in alerts] == ["b1|agent:bot|0|50", "b1|agent:bot|0|80"]
    assert all(a["event_id"] == "e9" for a in alerts)
    assert (entry.state, entry.until, entry.spent) == ("warn", 3_600_000, 800)


def test_effective_state_is_the_most_severe_unexpired_entry():
    def entry(state, until, budget_id):
        return Enforcement(state, budget_id, "total_tokens", 0, 1, 0, until, "")

    entries = {"a": entry("warn", 100, "a"), "b": entry("block", 50, "b"), "c": entry("allow", 500, "c")}
    assert effective(entries, now_ms=10).budget_id == "b"
    assert effective(entries, now_ms=60).budget_id == "a"
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
    messages = list(batch.messages(4, max_bytes=1_000_000))
    assert sorted(len(decode_message(m)) for _, m in messages) in ([2], [1, 1])
    for part, message in messages:
        assert all(scope_partition(delta.scope, 4) == part for delta in decode_message(message))
    assert d in [delta for _, m in messages for delta in decode_message(m)]


def test_deltas_messages_are_bounded_in_bytes_and_lose_nothing():
    batch = DeltaBatch()
    for i in range(500):
        event = {"event_id": f"e{i}", "event_time": 1_000_000, "input_tokens": 1, "output_tokens": 0,
                 "cached_tokens": 0}
        batch.add(event, [f"run:{'x' * 200}-{i}"], cost=1)
    messages = list(batch.messages(2, max_bytes=10_000))
    assert all(len(m) <= 10_000 for _, m in messages) and len(messages) > 2
    assert sorted(d.scope for _, m in messages for d in decode_message(m)) == sorted(s for s, _ in batch.deltas)


def test_scope_partition_matches_kafkas_default_partitioner():
    # Known murmur2 results of Kafka's DefaultPartitioner (Java) for these keys with 4 partitions.
    from aiokafka.partitioner import DefaultPartitioner

    for key in ("global", "agent:bot-7", "team:acme/search"):
        assert scope_partition(key, 4) == DefaultPartitioner()(key.encode(), [0, 1, 2, 3], [0, 1, 2, 3])


def test_scope_record_keeps_current_and_previous_windows():
    hour = parse_window("1h")
    record = ScopeRecord()
    d = lambda t, n: Delta("agent:a", t, input_tokens=n, events=1)  # noqa: E731
    assert not record.add(d(1_000, 5), [hour])
    assert record.window(hour, 1_000).totals == [5, 0, 0, 0, 1]
    assert not record.add(d(3_601_000, 7), [hour])
    assert not record.add(d(2_000, 1), [hour])  # late, previous window
    assert record.window(hour, 2_000) == Window(0, 3_600_000, [6, 0, 0, 0, 2])
    assert not record.add(d(7_201_000, 1), [hour])
    assert [w[0] for w in record.windows["3600s"]] == [7_200_000, 3_600_000]
    assert record.add(d(3_000, 1), [hour])  # older than the windows kept
    assert record.window(hour, 3_700_000).totals == [7, 0, 0, 0, 1]


def test_rolling_window_sums_the_last_size_of_buckets():
    rolling = parse_window("rolling:60s")
    record = ScopeRecord()
    for t in range(0, 120_000, 10_000):
        record.add(Delta("agent:a", t, input_tokens=1, events=1), [rolling])
    assert record.window(rolling, 110_000).totals[0] == 6  # 60s..110s
    assert len(record.windows["rolling:60s"]) <= 8  # old buckets pruned


def test_validation_rejects_absurd_usage():
    import pytest

    from tokenfuse.errors import DecodeError

    good = {"event_id": "e", "org": "o", "team": "t", "agent": "a", "model": "m", "provider": "p", "input_tokens": 5,
            "output_tokens": 5, "cached_tokens": 0, "cost_micro_usd": None, "event_time": 1_000}
    validate_usage(good, now_ms=2_000)
    for change, reason in [({"input_tokens": -1}, "negative"), ({"output_tokens": 10**12}, "absurd"),
                           ({"cached_tokens": 6}, "exceeds"), ({"agent": ""}, "agent"),
                           ({"event_time": 10**13}, "event_time"), ({"cost_micro_usd": -5}, "cost")]:
        with pytest.raises(DecodeError, match=reason):
            validate_usage({**good, **change}, now_ms=2_000)


def test_short_windows_stay_open_for_ten_minutes_of_partition_skew():
    minute = parse_window("1m")
    record = ScopeRecord()
    d = lambda t, n: Delta("global", t, input_tokens=n, events=1)  # noqa: E731
    record.add(d(1_000, 1), [minute])
    record.add(d(300_000, 1), [minute])  # another partition, five minutes ahead
    record.add(d(301_000, 1), [minute])
    assert not record.add(d(2_000, 4), [minute])  # 5 min back: still kept
    assert record.window(minute, 2_000).totals == [5, 0, 0, 0, 2]
    record.add(d(700_000, 1), [minute])
    assert record.add(d(3_000, 1), [minute])  # over ten minutes back: evicted
    assert [w[0] for w in record.windows["60s"]] == [660_000, 300_000]


def test_settle_updates_the_record_and_returns_what_to_publish():
    from collections import Counter

    from tokenfuse.kafka.codec import codec
    from tokenfuse.control.signing import Signer, Verifier, decode_verified
    from tokenfuse.worker.engine.settle import Settler

    hour = parse_window("1h")
    signer = Signer("key-1", b"k" * 32, "unit")
    settler = Settler({hour.name: hour}, Counter(), signer)
    index = BudgetIndex([budget()])
    record = ScopeRecord()
    now = 1_000
    out = settler.settle("agent:bot", record, [Delta("agent:bot", 0, input_tokens=950, events=1)], index, now)
    alerts = [codec("Alert").decode(o.value)["threshold_percent"] for o in out if o.topic == "alerts"]
    states = [decode_verified(o.value, Verifier({"key-1": signer.key}, "unit"))["state"]
              for o in out if o.topic == "control"]
    assert (alerts, states) == ([50, 80, 90], ["throttle"])
    assert record.published.state == "throttle" and "agent:bot" in settler.watched
    assert record.window(hour, now).totals == [950, 0, 0, 0, 1]
    # Nothing new: nothing to publish, and no second alert.
    assert settler.settle("agent:bot", record, [], index, now) == []


def test_a_threshold_fires_once_per_window_when_usage_goes_back_and_forth_across_a_boundary():
    hour = parse_window("1h")
    active = ActiveBudget(budget(), hour)
    record = ScopeRecord()
    fired = []
    # Out-of-order usage around the top of the hour: old window, new window, old window again.
    for t, tokens in [(3_599_000, 600), (3_601_000, 600), (3_598_000, 10), (3_602_000, 10)]:
        assert not record.add(Delta("agent:bot", t, input_tokens=tokens, events=1), [hour])
        window = record.window(hour, t)
        alerts, _ = evaluate(active, "agent:bot", window, record, "e", now_ms=1)
        fired += [a["alert_id"] for a in alerts]
    assert fired == ["b1|agent:bot|0|50", "b1|agent:bot|3600000|50"]


def test_merged_deltas_give_every_window_the_same_totals():
    import copy
    import random

    from tokenfuse.worker.engine.deltas import merge_deltas
    from tokenfuse.worker.engine.record import merge_grid_ms

    specs = [parse_window(w) for w in ("1m", "1h", "rolling:60s", "day", "month")]
    specs.append(parse_window("day", timezone="Asia/Kathmandu"))  # +05:45
    rng = random.Random(5)
    deltas = [Delta("agent:a", 1_700_000_000_000 + rng.randrange(0, 7_200) * 1000, input_tokens=rng.randrange(9),
                    cost_micro_usd=rng.randrange(99), events=1, last_event_id=str(i)) for i in range(300)]
    deltas.sort(key=lambda d: d.second_ms)
    atom = merge_grid_ms(specs)
    assert atom == 5000
    merged = merge_deltas(copy.deepcopy(deltas), atom)
    assert len(merged) < len(deltas)
    one, other = ScopeRecord(), ScopeRecord()
    for spec in specs:
        for d in deltas:
            one.add(d, [spec])
        for d in merged:
            other.add(d, [spec])
        for t in range(1_700_000_000_000, 1_700_007_300_000, 30_000):
            assert one.window(spec, t) == other.window(spec, t), (spec.name, t)
