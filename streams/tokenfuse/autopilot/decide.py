"""The autopilot's decisions: pure functions of the policy, the book (budgets in force and past
decisions) and one input (a forecast alert, a flag, a closed window, an approval, the clock).

The invariants (tests/unit/test_autopilot_properties.py): a limit the autopilot sets stays in
[floor, cap]; a raise or shrink moves it by at most max_step; the budgets whose rule names a
parent never sum above the parent's limit; two applied changes of a budget are at least a
cooldown apart; an input seen twice decides nothing new (ids are derived from inputs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from tokenfuse.autopilot.book import Book, Decision, decision_id
from tokenfuse.autopilot.policy import Policy, Rule
from tokenfuse.usage.windows import parse_window

COST = "cost_micro_usd"


@dataclass(frozen=True)
class Forecast:
    """What a forecast alert says (Alert.avsc, kind forecast)."""

    alert_id: str
    budget_id: str
    scope: str
    window_start: int
    window_end: int
    projected: int | None
    eta_p50: int | None
    burn_rate_per_hour: float | None

    @classmethod
    def from_alert(cls, alert: Mapping[str, Any]) -> "Forecast":
        return cls(alert["alert_id"], alert["budget_id"] or "", alert["scope"], alert["window_start"] or 0,
                   alert["window_end"] or 0, alert.get("projected"), alert.get("eta_p50"),
                   alert.get("burn_rate_per_hour"))


def children_sum(book: Book, policy: Policy, parent_id: str, *, instead: Mapping[str, int] | None = None) -> int:
    """The limits of the budgets in force whose rule names `parent_id` (with `instead` overriding some)."""
    instead = instead or {}
    return sum(instead.get(bid, b["limit"]) for bid, b in book.budgets.items()
               if (r := policy.rule_for(bid)) is not None and r.parent == parent_id)


def _unusable(book: Book, rule: Rule, budget: Mapping[str, Any]) -> str | None:
    """Why this rule cannot adjust this budget at all, if it cannot."""
    if "*" in budget["scope"]:
        return f"scope {budget['scope']} is a pattern: a raise would apply to every value"
    if rule.unit == "usd" and budget["metric"] != COST:
        return f"the rule (line {rule.line}) is in USD but the budget counts {budget['metric']}"
    if rule.parent is not None:
        parent = book.budgets.get(rule.parent)
        if parent is None:
            return f"parent budget {rule.parent} is not in force"
        if (parent["metric"], parent["window"], parent.get("timezone")) != (
                budget["metric"], budget["window"], budget.get("timezone")):
            return f"parent budget {rule.parent} counts another metric or window"
    return None


def _decision(book: Book, rule: Rule, budget: Mapping[str, Any], kind: str, trigger: str, now_ms: int,
              **fields: Any) -> Decision:
    return Decision(id=decision_id(budget["id"], kind, trigger), kind=kind, budget_id=budget["id"],
                    scope=budget["scope"], metric=budget["metric"], old_limit=budget["limit"],
                    base_limit=book.base_limit(budget["id"]), trigger=trigger, mode=rule.mode, decided_at=now_ms,
                    **fields)


def _cooling(book: Book, rule: Rule, budget_id: str, now_ms: int, *, applied_only: bool) -> int | None:
    """Until when the budget's cooldown runs, if it runs now."""
    last = book.last_change_at(budget_id, applied_only=applied_only)
    return last + rule.cooldown_ms if last is not None and now_ms < last + rule.cooldown_ms else None


def raise_bound(book: Book, policy: Policy, rule: Rule, budget: Mapping[str, Any], target: int) -> tuple[int, str]:
    """The highest limit a raise toward `target` may set now, and what bounds it."""
    old = budget["limit"]
    bounds = [(target, "the forecast"), (rule.cap, "the cap"), (old + rule.max_step, "the max step")]
    if rule.parent is not None:
        parent = book.budgets[rule.parent]
        headroom = parent["limit"] - children_sum(book, policy, rule.parent)
        bounds.append((old + max(0, headroom), f"parent {rule.parent}'s headroom"))
    return min(bounds, key=lambda b: b[0])


def on_forecast(book: Book, policy: Policy, forecast: Forecast, now_ms: int) -> Decision | None:
    """A raise (applied in auto mode, proposed otherwise) or a refusal saying why; None when the
    forecast concerns nothing the policy covers, is stale, or was decided on already."""
    budget = book.budgets.get(forecast.budget_id)
    rule = policy.rule_for(forecast.budget_id) if budget else None
    if budget is None or rule is None or rule.raise_ is None or forecast.window_end <= now_ms:
        return None
    if decision_id(budget["id"], "raise", forecast.alert_id) in book.decisions:
        return None
    if budget["scope"] != forecast.scope:
        return None
    if any(d.kind == "raise" and d.status in ("proposed", "approved") and d.window_end == forecast.window_end
           for d in book.of(budget["id"])):
        return None  # a proposal for this window waits already
    target = (math.ceil(forecast.projected * (100 + rule.raise_.margin_percent) / 100)
              if forecast.projected is not None else budget["limit"] + rule.max_step)
    fields = dict(window_start=forecast.window_start, window_end=forecast.window_end,
                  forecast_projected=forecast.projected, forecast_eta_p50=forecast.eta_p50,
                  forecast_burn_rate_per_hour=forecast.burn_rate_per_hour)

    def refused(why: str) -> Decision:
        return _decision(book, rule, budget, "raise", forecast.alert_id, now_ms, status="refused",
                         new_limit=budget["limit"], reason=why, **fields)

    if (why := _unusable(book, rule, budget)) is not None:
        return refused(why)
    if (hold := book.hold(budget["id"], now_ms)) is not None:
        return refused(f"held: {hold.reason}")
    if (until := _cooling(book, rule, budget["id"], now_ms, applied_only=False)) is not None:
        return refused(f"cooldown until {until}")
    new, bound = raise_bound(book, policy, rule, budget, target)
    if new <= budget["limit"] or new < rule.floor:
        return refused(f"no raise possible: bounded by {bound} ({new})")
    expires = forecast.window_end if rule.raise_.expires == "window_end" else None
    reason = (f"forecast: projected {forecast.projected} > limit {budget['limit']} before the window ends; "
              f"raise to {new} (bounded by {bound}, rule line {rule.line})")
    return _decision(book, rule, budget, "raise", forecast.alert_id, now_ms, new_limit=new, reason=reason,
                     status="applied" if rule.mode == "auto" else "proposed", expires_at=expires, **fields)


def on_flag(book: Book, policy: Policy, alert: Mapping[str, Any], now_ms: int) -> list[Decision]:
    """Holds for the budgets a loop, spike or runaway alert concerns: never raised until the end
    of the window the alert came in (an old alert read again holds nothing)."""
    holds = []
    at = alert.get("created_at") or now_ms
    for budget in book.budgets.values():
        rule = policy.rule_for(budget["id"])
        if rule is None or (budget["id"] != alert.get("budget_id") and budget["scope"] != alert["scope"]):
            continue
        window_end = parse_window(budget["window"], budget.get("timezone") or "UTC").bounds(at)[1]
        if window_end <= now_ms:
            continue
        hold = _decision(book, rule, budget, "hold", alert["alert_id"], now_ms, status="held",
                         new_limit=budget["limit"], window_end=window_end,
                         reason=f"{alert['kind']} alert {alert['alert_id']} on {alert['scope']}")
        if hold.id not in book.decisions:
            holds.append(hold)
    return holds


def on_idle(book: Book, policy: Policy, budget_id: str, spends: list[int], recommendation: int | None,
            window_start: int, now_ms: int) -> Decision | None:
    """A shrink toward the recommendation (or the floor without one) after the policy's idle
    windows: `spends` are the budget's last complete windows, oldest first, the last starting
    at `window_start`."""
    budget = book.budgets.get(budget_id)
    rule = policy.rule_for(budget_id) if budget else None
    if budget is None or rule is None or rule.shrink is None or _unusable(book, rule, budget):
        return None
    trigger = f"idle:{window_start}"
    idle = spends[-rule.shrink.idle_windows:]
    if (decision_id(budget_id, "shrink", trigger) in book.decisions or len(idle) < rule.shrink.idle_windows
            or any(s * 100 >= rule.shrink.idle_below_percent * budget["limit"] for s in idle)
            or book.active_raise(budget_id) is not None
            or _cooling(book, rule, budget_id, now_ms, applied_only=False) is not None):
        return None
    new = shrink_bound(book, policy, rule, budget, recommendation if recommendation is not None else rule.floor)
    if new >= budget["limit"] or new > rule.cap:
        return None
    reason = (f"idle: {len(idle)} windows under {rule.shrink.idle_below_percent}% of {budget['limit']} "
              f"(max {max(idle)}); toward {'the recommendation ' + str(recommendation) if recommendation else 'the floor'}")
    return _decision(book, rule, budget, "shrink", trigger, now_ms, new_limit=new, reason=reason,
                     status="applied" if rule.mode == "auto" else "proposed", window_start=window_start)


def shrink_bound(book: Book, policy: Policy, rule: Rule, budget: Mapping[str, Any], target: int) -> int:
    """The lowest limit a shrink toward `target` may set now: not under the floor, the max step,
    nor the budget's own children."""
    return max(target, rule.floor, budget["limit"] - rule.max_step, children_sum(book, policy, budget["id"]))


def on_approval(book: Book, policy: Policy, approved: Decision, now_ms: int) -> Decision:
    """An operator approved a proposal: applied, re-bounded by the state now (the limits may
    have moved since it was proposed), or refused saying why."""
    budget = book.budgets.get(approved.budget_id)
    rule = policy.rule_for(approved.budget_id)
    if budget is None or rule is None:
        return approved.next(status="refused", reason=f"{approved.reason}; refused: budget or rule gone")
    if (why := _unusable(book, rule, budget)) is not None:
        return approved.next(status="refused", reason=f"{approved.reason}; refused: {why}")
    if approved.window_end is not None and approved.kind == "raise" and approved.window_end <= now_ms:
        return approved.next(status="refused", reason=f"{approved.reason}; refused: approved after its window ended")
    if (until := _cooling(book, rule, approved.budget_id, now_ms, applied_only=True)) is not None:
        return approved.next(status="refused", reason=f"{approved.reason}; refused: cooldown until {until}")
    if approved.kind == "raise":
        if (hold := book.hold(approved.budget_id, now_ms)) is not None:
            return approved.next(status="refused", reason=f"{approved.reason}; refused: held: {hold.reason}")
        new = min(approved.new_limit, raise_bound(book, policy, rule, budget, approved.new_limit)[0])
        ok = new > budget["limit"] and new >= rule.floor
    else:
        new = max(approved.new_limit, shrink_bound(book, policy, rule, budget, approved.new_limit))
        ok = new < budget["limit"] and new <= rule.cap
    if not ok:
        return approved.next(status="refused", reason=f"{approved.reason}; refused: no change possible now")
    return approved.next(status="applied", old_limit=budget["limit"], new_limit=new,
                         base_limit=book.base_limit(approved.budget_id))


def due_expiry(book: Book, policy: Policy, now_ms: int) -> Decision | None:
    """The next temporary raise whose time is up, children before their parents (a parent's
    return never goes under its children's limits): back to its base limit."""
    due = [d for bid in book.budgets if (d := book.active_raise(bid)) is not None
           and d.expires_at is not None and d.expires_at <= now_ms]
    if not due:
        return None
    raised = min(due, key=lambda d: (-_depth(policy, d.budget_id), d.budget_id))
    budget = book.budgets[raised.budget_id]
    new = max(raised.base_limit, children_sum(book, policy, raised.budget_id))
    return dataclasses.replace(
        raised, id=decision_id(raised.budget_id, "expire", raised.id), kind="expire", status="applied",
                       old_limit=budget["limit"], new_limit=new, decided_at=now_ms, revision=0,
                       trigger=raised.id, budget_updated_at=None, approved_by="", approved_at=None,
                       reason=f"the raise {raised.id} ends with its window: back to {new}")


def _depth(policy: Policy, budget_id: str) -> int:
    depth, seen = 0, {budget_id}
    rule = policy.rule_for(budget_id)
    while rule is not None and rule.parent is not None and rule.parent not in seen:
        depth += 1
        seen.add(rule.parent)
        rule = policy.rule_for(rule.parent)
    return depth


def publication(book: Book, decision: Decision, now_ms: int) -> tuple[dict[str, Any], Decision]:
    """What applying `decision` publishes, and records in `book`: the budget version (unsigned)
    with the new limit, a newer updated_at (readers keep the newest) and the decision named in
    its description; and the decision saying which budget version it wrote (how a restart
    knows the version in force is the autopilot's)."""
    budget = book.budgets[decision.budget_id]
    description = budget.get("description", "").split("[autopilot ", 1)[0].strip()
    version = {**{k: v for k, v in budget.items() if k not in ("key_id", "signature")},
               "limit": decision.new_limit, "updated_at": max(now_ms, budget["updated_at"] + 1),
               "description": f"{description} [autopilot {decision.id}: {decision.kind} to {decision.new_limit}]".strip()}
    done = dataclasses.replace(decision, budget_updated_at=version["updated_at"])
    book.merge_budget(version)
    book.merge_decision(done)
    return version, done
