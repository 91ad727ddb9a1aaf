"""The lease protocol's pure parts, shared by the worker (worker/leases.py, grants) and the SDK
(sdk/leases.py, spends): record keys, which budgets are leased, and the sizing rule. docs/leases.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tokenfuse.worker.engine.rules import ActiveBudget, spend_at

SEP = "\x1f"


def lease_key(budget_id: str, scope: str, holder: str) -> str:
    return f"{budget_id}{SEP}{scope}{SEP}{holder}"


def block_spend(budget: Mapping[str, Any]) -> int | None:
    """The spend at which the budget's first block threshold is reached (None: it never blocks)."""
    return spend_at(budget, ("block",))


def leasable(budget: ActiveBudget) -> bool:
    """Budgets with discrete windows and a block threshold; rolling windows stay with the kill switch."""
    return not budget.window.re_arms and block_spend(budget.budget) is not None


@dataclass(frozen=True)
class Grant:
    cap: int  # the holder's new cap
    granted: int  # the window's new total of caps
    remaining: int  # what is left to grant after this one


def size_grant(limit: int, settled: int, base: int, granted: int, cap: int, used: int, active: int) -> Grant:
    """The sizing rule. remaining = limit - max(settled, base + granted); the holder's headroom
    is brought to remaining / (2 * active holders), never past remaining: leases shrink as the
    budget runs out, and base + the sum of caps stays <= limit. Caps never go down (the holder
    may have spent up to its cap already)."""
    remaining = limit - max(settled, base + granted)
    if remaining <= 0:
        return Grant(cap, granted, min(remaining, 0))
    share = -(-remaining // (2 * max(1, active)))
    new_cap = min(max(cap, used + share), cap + remaining)
    return Grant(new_cap, granted + new_cap - cap, remaining - (new_cap - cap))
