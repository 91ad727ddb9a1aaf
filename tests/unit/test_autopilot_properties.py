"""The autopilot's invariants, over random sequences of forecasts, flags, idle windows,
approvals, clock ticks and restarts (hypothesis): limits stay in [floor, cap], no step above
the maximum, children never sum above their parent, cooldowns hold, and a restart that reads
its inputs again applies nothing twice."""

from __future__ import annotations

from hypothesis import given, settings as hsettings, strategies as st

from tokenfuse.autopilot.book import Book
from tokenfuse.autopilot.pilot import Pilot
from tokenfuse.autopilot.policy import Policy, Raise, Rule, Shrink

HOUR = 3_600_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR
CHILDREN = ("c0", "c1", "c2")


def budget(budget_id: str, scope: str, limit: int) -> dict:
    return {"id": budget_id, "scope": scope, "metric": "total_tokens", "window": "1h", "timezone": "UTC",
            "limit": limit, "thresholds": [{"percent": 100, "action": "block"}], "description": "",
            "updated_at": 1}


@st.composite
def worlds(draw):
    """Three children of one parent whose limit leaves them a little headroom (so it binds)."""
    rules, budgets = [], {}
    for child in CHILDREN:
        floor = draw(st.integers(100, 1_000))
        cap = floor + draw(st.integers(0, 5_000))
        rules.append(Rule(budget=child, floor=floor, cap=cap, max_step=draw(st.integers(1, 2_000)),
                          cooldown_ms=draw(st.sampled_from([1_000, 600_000, HOUR, HOUR, 3 * HOUR])),
                          mode=draw(st.sampled_from(["auto", "auto", "approve", "dry-run"])), parent="org",
                          raise_=Raise(draw(st.integers(0, 50)), draw(st.sampled_from(["window_end", "never"]))),
                          shrink=Shrink(draw(st.integers(1, 3)), 50)))
        budgets[child] = budget(child, f"agent:{child}", draw(st.integers(floor, min(cap, floor + 1_000))))
    parent_limit = sum(b["limit"] for b in budgets.values()) + draw(st.integers(0, 4_000))
    budgets["org"] = budget("org", "org:acme", parent_limit)
    return Policy(tuple(rules)), budgets


forecast = st.tuples(st.just("forecast"), st.sampled_from(CHILDREN),
                     st.one_of(st.sampled_from([3_000, 8_000, 30_000]), st.integers(0, 30_000)))
wait = st.tuples(st.just("wait"), st.just(""), st.sampled_from([60_000, 600_000, 1_500_000, 2_400_000, HOUR, 5 * HOUR]))
steps = st.lists(st.one_of(
    forecast, forecast, forecast, wait, wait,
    st.tuples(st.just("flag"), st.sampled_from(CHILDREN), st.just(0)),
    st.tuples(st.just("idle"), st.sampled_from(CHILDREN), st.integers(0, 3_000)),
    st.tuples(st.just("approve"), st.sampled_from(CHILDREN), st.just(0)),
    st.tuples(st.just("restart"), st.just(""), st.integers(1, 5)),
), min_size=5, max_size=80)


class Checker:
    def __init__(self, policy: Policy):
        self.policy = policy
        self.changes: dict[str, list[int]] = {}
        self.applied: set[str] = set()

    def outcomes(self, outcomes, book: Book) -> None:
        for outcome in outcomes:
            d = outcome.decision
            rule = self.policy.rule_for(d.budget_id)
            if d.status != "applied":
                assert outcome.budget is None
                continue
            assert d.id not in self.applied, f"{d.id} applied twice"
            self.applied.add(d.id)
            assert rule.floor <= d.new_limit <= rule.cap, d
            assert outcome.budget["limit"] == d.new_limit, d
            if d.kind in ("raise", "shrink"):
                assert abs(d.new_limit - d.old_limit) <= rule.max_step, d
                assert d.new_limit > d.old_limit if d.kind == "raise" else d.new_limit < d.old_limit
                times = self.changes.setdefault(d.budget_id, [])
                assert not times or d.budget_updated_at - times[-1] >= rule.cooldown_ms, (times, d)
                times.append(d.budget_updated_at)
            else:  # a temporary raise ended: back to the operator's limit (children have no children here)
                assert d.kind == "expire" and d.new_limit == d.base_limit, d
        children = sum(book.budgets[c]["limit"] for c in CHILDREN)
        assert children <= book.budgets["org"]["limit"], (children, book.budgets["org"]["limit"])


@hsettings(max_examples=400, deadline=None)
@given(worlds(), steps)
def test_no_sequence_of_inputs_breaks_the_autopilots_invariants(world, sequence):
    policy, budgets = world
    pilot = Pilot(policy, Book(budgets={k: dict(v) for k, v in budgets.items()}))
    check = Checker(policy)
    now = T0 + 1
    seen: list[tuple] = []  # inputs read so far, for a restart to read again

    def feed(item, at):
        kind, child, value = item
        if kind == "forecast":
            start = at - at % HOUR
            alert = {"kind": "forecast", "alert_id": f"{child}|{start}|forecast|{value}", "budget_id": child,
                     "scope": f"agent:{child}", "window_start": start, "window_end": start + HOUR,
                     "projected": value, "eta_p50": at + 60_000, "burn_rate_per_hour": 1.0}
            return pilot.alert(alert, at)
        if kind == "flag":
            return pilot.alert({"kind": "loop", "alert_id": f"loop|{child}|{at}", "budget_id": child,
                                "scope": f"agent:{child}"}, at)
        if kind == "idle":
            start = at - at % HOUR - HOUR
            return pilot.idle(child, [value] * 3, value * 2 or None, start, at)
        if kind == "approve":
            waiting = [d for d in pilot.book.of(child) if d.status == "proposed" and d.mode == "approve"]
            return pilot.decision(waiting[-1].next(status="approved", approved_by="op", approved_at=at), at) \
                if waiting else []
        return []

    for item in sequence:
        kind, _, value = item
        if kind == "wait":
            now += value
            check.outcomes(pilot.tick(now), pilot.book)
        elif kind == "restart":
            # A new process: the book read back from what was published, then the last inputs again.
            published = pilot.book
            pilot = Pilot(policy, Book(budgets={k: dict(v) for k, v in published.budgets.items()}))
            for decision in published.decisions.values():
                pilot.book.merge_decision(decision)
            for again, at in seen[-value:]:
                check.outcomes(feed(again, at), pilot.book)
        else:
            now += 1_000
            check.outcomes(pilot.tick(now), pilot.book)
            check.outcomes(feed(item, now), pilot.book)
            seen.append((item, now))
