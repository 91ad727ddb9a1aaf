"""Budget rules, pure functions: which budgets apply to a scope, which thresholds an update
crosses, the enforcement ladder, and the alert and control-state records they produce.
No Kafka, no Faust: unit-tested directly."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from tokenfuse.budgets.spec import MAX_PERCENT
from tokenfuse.usage.scopes import pattern_of, validate_scope
from tokenfuse.usage.windows import Window, WindowSpec, metric, parse_window
from tokenfuse.worker.engine.record import Enforcement, ScopeRecord

# Threshold actions in order of severity; "alert" only notifies, the rest are enforcement states.
SEVERITY = {"allow": 0, "alert": 0, "warn": 1, "throttle": 2, "block": 3}
DEFAULT_THROTTLE_DELAY_MS = 1_000


@dataclass(frozen=True)
class ActiveBudget:
    budget: dict[str, Any]
    window: WindowSpec

    @property
    def id(self) -> str:
        return self.budget["id"]


class BudgetIndex:
    """Budgets by the scope pattern they target, for a fast lookup per scope key."""

    def __init__(self, budgets: Iterable[Mapping[str, Any]]):
        self._by_pattern: dict[str, list[ActiveBudget]] = defaultdict(list)
        self._by_scope: dict[str, list[ActiveBudget]] = {}  # for_scope's answers (an index never changes)
        self.rejected: dict[str, str] = {}
        for budget in budgets:
            problem = validate_scope(budget["scope"])
            try:
                window = parse_window(budget["window"], budget.get("timezone", "UTC"))
            except ValueError as exc:
                problem = problem or str(exc)
            problem = problem or budget_problem(budget)
            if problem:
                self.rejected[budget["id"]] = problem
                continue
            self._by_pattern[budget["scope"]].append(ActiveBudget(dict(budget), window))

    def for_scope(self, scope_key: str) -> list[ActiveBudget]:
        found = self._by_scope.get(scope_key)
        if found is None:
            if len(self._by_scope) > 1_000_000:  # bounded: scopes come and go
                self._by_scope.clear()
            found = self._by_scope[scope_key] = [b for pattern in pattern_of(scope_key)
                                                 for b in self._by_pattern.get(pattern, ())]
        return found

    @property
    def windows(self) -> set[WindowSpec]:
        return {b.window for budgets in self._by_pattern.values() for b in budgets}


def budget_problem(budget: Mapping[str, Any]) -> str:
    """What makes a budget unusable beyond its scope and window ("" if nothing): the same bounds
    as `budgets apply` (budgets/spec.py), for records that reached the topic another way."""
    if budget["limit"] <= 0:
        return "limit must be positive"
    bad = [t["percent"] for t in budget["thresholds"] if not 1 <= t["percent"] <= MAX_PERCENT]
    if bad:
        return f"threshold percent {bad[0]} is outside 1..{MAX_PERCENT}"
    return ""


def reached(budget: Mapping[str, Any], spent: int) -> list[dict[str, Any]]:
    """The thresholds that `spent` has reached, in increasing percent."""
    limit = budget["limit"]
    return [t for t in sorted(budget["thresholds"], key=lambda t: t["percent"])
            if spent * 100 >= t["percent"] * limit]


def enforcement(budget: Mapping[str, Any], spent: int) -> str:
    """The state a budget asks for at this spend: the most severe action reached (allow if none).
    Recomputed from the current limit on every update, so raising a limit releases a block and
    lowering it below the spend blocks at the next update."""
    states = [t["action"] for t in reached(budget, spent) if t["action"] != "alert"]
    return max(states, key=SEVERITY.__getitem__, default="allow")


def effective(entries: Mapping[str, Enforcement], now_ms: int) -> Enforcement | None:
    """The most severe unexpired entry of a scope (ties: the one lasting longest), or None."""
    live = [e for e in entries.values() if e.state != "allow" and e.until > now_ms]
    if not live:
        return None
    return max(live, key=lambda e: (SEVERITY[e.state], e.until))


def alert_for(budget: ActiveBudget, scope: str, threshold: dict[str, Any], spent: int, window: Window,
              event_id: str, now_ms: int) -> dict[str, Any]:
    b = budget.budget
    return {
        # Deterministic id: a replay after a crash produces the same alert id, so history dedupes.
        "alert_id": f"{b['id']}|{scope}|{window.start}|{threshold['percent']}",
        "kind": "threshold", "scope": scope, "budget_id": b["id"],
        "threshold_percent": threshold["percent"], "action": threshold["action"],
        "metric": b["metric"], "spent": spent, "limit": b["limit"],
        "window_start": window.start, "window_end": window.end, "event_id": event_id, "created_at": now_ms,
        "message": f"{scope} reached {threshold['percent']}% of budget {b['id']} "
                   f"({spent} of {b['limit']} {b['metric']}, window {b['window']})",
    }


def evaluate(budget: ActiveBudget, scope: str, window: Window, record: ScopeRecord, event_id: str,
             now_ms: int) -> tuple[list[dict[str, Any]], Enforcement]:
    """Alerts for thresholds newly crossed and the enforcement entry this budget asks for.

    Each threshold fires once per budget, scope and window: record.fired[budget id] remembers the
    highest percent fired in each window the record still keeps (around a window boundary,
    out-of-order usage goes back and forth between two windows). A window kind that re-arms
    (rolling) has no discrete windows: a threshold fires again once spend fell back below it."""
    b, spec = budget.budget, budget.window
    spent = metric(window.totals, b["metric"])
    fired_by_window = record.fired.setdefault(b["id"], {})
    key = spec.fired_key(window)
    fired = fired_by_window.get(key, 0)
    hit = reached(b, spent)
    top = hit[-1]["percent"] if hit else 0
    crossed = [t for t in hit if t["percent"] > fired]
    if crossed or (spec.re_arms and top < fired):
        fired_by_window[key] = top
        # Forget windows the record no longer keeps: no usage reaches them.
        kept = spec.kept_keys(record.windows.get(spec.name, spec.new_state())) | {key}
        for old in set(fired_by_window) - kept:
            del fired_by_window[old]
    alerts = [alert_for(budget, scope, t, spent, window, event_id, now_ms) for t in crossed]
    entry = Enforcement(
        state=enforcement(b, spent), budget_id=b["id"], metric=b["metric"], spent=spent, limit=b["limit"],
        window_start=window.start, until=spec.until(window),
        reason=f"budget {b['id']}: {spent} of {b['limit']} {b['metric']} in window {b['window']}")
    return alerts, entry


def control_state(scope: str, entry: Enforcement | None, now_ms: int) -> dict[str, Any]:
    """The ControlState record (unsigned) for a scope's effective entry; None means allow."""
    if entry is None:
        return {"scope": scope, "state": "allow", "reason": "within budget", "issued_at": now_ms}
    return {
        "scope": scope, "state": entry.state, "budget_id": entry.budget_id, "reason": entry.reason,
        "metric": entry.metric, "spent": entry.spent, "limit": entry.limit,
        "window_start": entry.window_start, "until": entry.until,
        "throttle_delay_ms": DEFAULT_THROTTLE_DELAY_MS if entry.state == "throttle" else None,
        "issued_at": now_ms,
    }


def spend_at(budget: Mapping[str, Any], actions: tuple[str, ...]) -> int | None:
    """The lowest spend reaching a threshold with one of `actions` (None: the budget has none):
    `reached` holds when spent * 100 >= percent * limit."""
    percents = [t["percent"] for t in budget["thresholds"] if t["action"] in actions]
    return -(-min(percents) * budget["limit"] // 100) if percents else None
