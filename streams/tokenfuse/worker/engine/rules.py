"""Budget decisions, pure functions: which budgets apply to a scope, which thresholds an update
crosses, and the enforcement state of a scope. No Kafka, no Faust: unit-tested directly."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from tokenfuse.usage.scopes import pattern_of, validate_scope
from tokenfuse.usage.windows import WindowSpec, parse_window

log = logging.getLogger(__name__)

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
        self.rejected: dict[str, str] = {}
        for budget in budgets:
            problem = validate_scope(budget["scope"])
            try:
                window = parse_window(budget["window"], budget.get("timezone", "UTC"))
            except ValueError as exc:
                problem = problem or str(exc)
            if problem or budget["limit"] <= 0:
                self.rejected[budget["id"]] = problem or "limit must be positive"
                continue
            self._by_pattern[budget["scope"]].append(ActiveBudget(dict(budget), window))

    def for_scope(self, scope_key: str) -> list[ActiveBudget]:
        return [b for pattern in pattern_of(scope_key) for b in self._by_pattern.get(pattern, ())]

    @property
    def windows(self) -> set[WindowSpec]:
        return {b.window for budgets in self._by_pattern.values() for b in budgets}


def percent_used(spent: int, limit: int) -> float:
    return 100.0 * spent / limit


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


def effective(entries: Mapping[str, Mapping[str, Any]], now_ms: int) -> dict[str, Any] | None:
    """The most severe unexpired entry of a scope (ties: the one lasting longest), or None."""
    live = [e for e in entries.values() if e["state"] != "allow" and (e["until"] or now_ms + 1) > now_ms]
    if not live:
        return None
    return max(live, key=lambda e: (SEVERITY[e["state"]], e["until"] or 0))
