"""What the autopilot knows, all of it read back from Kafka: the budgets in force and every
decision it (or an operator approving one) published. Nothing else is kept, so a restarted
autopilot knows exactly what the last one did.

A decision's id is derived from what caused it (`decision_id`): the same alert or window read
again after a restart yields the same id, which is already in the book, so nothing happens twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

KINDS = ("raise", "shrink", "expire", "hold")
# proposed: waits for an operator (approve) or only shown (dry-run); approved: an operator said yes,
# the autopilot applies it; applied: published on the budgets topic; refused: not done, see reason;
# held: the scope is flagged (loop, spike): never raised until the hold ends.
STATUSES = ("proposed", "approved", "applied", "refused", "held")
CHANGES = ("raise", "shrink")  # the kinds a cooldown and a max step govern


def decision_id(budget_id: str, kind: str, trigger: str) -> str:
    """Deterministic: the same cause gives the same id across restarts."""
    return "ap-" + hashlib.sha256(f"{budget_id}|{kind}|{trigger}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Decision:
    id: str
    kind: str
    status: str
    budget_id: str
    scope: str
    metric: str
    old_limit: int
    new_limit: int
    base_limit: int  # the operator's limit a temporary raise returns to
    reason: str
    trigger: str  # the alert id, or the window, behind it
    mode: str
    decided_at: int
    window_start: int | None = None
    window_end: int | None = None
    expires_at: int | None = None  # a raise returns to base_limit then (None: it stays)
    forecast_projected: int | None = None
    forecast_eta_p50: int | None = None
    forecast_burn_rate_per_hour: float | None = None
    budget_updated_at: int | None = None  # the budget version it published (applied ones)
    approved_by: str = ""
    approved_at: int | None = None
    revision: int = 0  # grows with each status change of the same decision

    def next(self, **changes: Any) -> "Decision":
        return dataclasses.replace(self, revision=self.revision + 1, **changes)

    def record(self) -> dict[str, Any]:
        """The AutopilotDecision record (unsigned)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Decision":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


@dataclass
class Book:
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> Budget record in force
    decisions: dict[str, Decision] = field(default_factory=dict)  # add through merge_decision only
    _by_budget: dict[str, dict[str, Decision]] = field(default_factory=dict, repr=False)

    def merge_decision(self, decision: Decision) -> bool:
        """Keep the newest revision of each decision (a follower may deliver an older one late);
        whether `decision` was news."""
        held = self.decisions.get(decision.id)
        if held is not None and decision.revision <= held.revision:
            return False
        self.decisions[decision.id] = decision
        self._by_budget.setdefault(decision.budget_id, {})[decision.id] = decision
        return True

    def merge_budget(self, budget: Mapping[str, Any]) -> None:
        held = self.budgets.get(budget["id"])
        if budget.get("deleted"):
            if held is None or budget["updated_at"] >= held["updated_at"]:
                self.budgets.pop(budget["id"], None)
        elif held is None or budget["updated_at"] >= held["updated_at"]:
            self.budgets[budget["id"]] = dict(budget)

    def of(self, budget_id: str) -> list[Decision]:
        return sorted(self._by_budget.get(budget_id, {}).values(), key=lambda d: (d.decided_at, d.id))

    def published(self, budget_id: str) -> Decision | None:
        """The applied decision that wrote the budget version in force, if the autopilot wrote it;
        None when an operator's version is in force (the operator wins over any raise)."""
        budget = self.budgets.get(budget_id)
        if budget is None:
            return None
        return next((d for d in reversed(self.of(budget_id)) if d.status == "applied"
                     and d.budget_updated_at == budget["updated_at"]), None)

    def base_limit(self, budget_id: str) -> int:
        mine = self.published(budget_id)
        return mine.base_limit if mine else self.budgets[budget_id]["limit"]

    def active_raise(self, budget_id: str) -> Decision | None:
        mine = self.published(budget_id)
        return mine if mine is not None and mine.kind == "raise" else None

    def last_change_at(self, budget_id: str, *, applied_only: bool) -> int | None:
        """When the budget last changed (applied) or a change was last proposed: cooldowns count from it."""
        times = [d.budget_updated_at if d.status == "applied" else d.decided_at for d in self.of(budget_id)
                 if d.kind in CHANGES and (d.status == "applied" or
                                           (not applied_only and d.status in ("proposed", "approved")))]
        return max((t for t in times if t is not None), default=None)

    def hold(self, budget_id: str, now_ms: int) -> Decision | None:
        return next((d for d in self.of(budget_id) if d.kind == "hold" and (d.window_end or 0) > now_ms), None)
