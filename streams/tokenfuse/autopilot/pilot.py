"""Inputs in, outcomes out: the decisions of decide.py applied to the book, with the budget
version each applied one publishes. The role (app.py) publishes the outcomes; the simulation
benchmark and the property tests drive the same object in simulated time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tokenfuse.autopilot import decide
from tokenfuse.autopilot.book import Book, Decision
from tokenfuse.autopilot.policy import Policy

FLAG_KINDS = ("loop", "spike", "runaway")


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    budget: dict[str, Any] | None = None  # the version to publish (applied decisions)


class Pilot:
    def __init__(self, policy: Policy, book: Book | None = None):
        self.policy, self.book = policy, book or Book()

    def alert(self, alert: Mapping[str, Any], now_ms: int) -> list[Outcome]:
        """A forecast may raise; a loop, spike or runaway alert holds its budgets; others do nothing."""
        if alert["kind"] == "forecast" and alert.get("budget_id"):
            decision = decide.on_forecast(self.book, self.policy, decide.Forecast.from_alert(alert), now_ms)
            return self._take([decision] if decision else [], now_ms)
        if alert["kind"] in FLAG_KINDS:
            return self._take(decide.on_flag(self.book, self.policy, alert, now_ms), now_ms)
        return []

    def idle(self, budget_id: str, spends: list[int], recommendation: int | None, window_start: int,
             now_ms: int) -> list[Outcome]:
        decision = decide.on_idle(self.book, self.policy, budget_id, spends, recommendation, window_start, now_ms)
        return self._take([decision] if decision else [], now_ms)

    def decision(self, decision: Decision, now_ms: int) -> list[Outcome]:
        """A decision read back from the decisions topic: an operator's approval is acted on
        (applied or refused); anything else only updates the book."""
        if not self.book.merge_decision(decision) or decision.status != "approved":
            return []
        return self._take([decide.on_approval(self.book, self.policy, decision, now_ms)], now_ms)

    def tick(self, now_ms: int) -> list[Outcome]:
        """Temporary raises whose window ended go back to their base limit."""
        out = []
        while (expiry := decide.due_expiry(self.book, self.policy, now_ms)) is not None:
            out += self._take([expiry], now_ms)
        return out

    def _take(self, decisions: list[Decision], now_ms: int) -> list[Outcome]:
        out = []
        for decision in decisions:
            if decision.status == "applied":
                budget, done = decide.publication(self.book, decision, now_ms)
                out.append(Outcome(done, budget))
            else:
                self.book.merge_decision(decision)
                out.append(Outcome(decision))
        return out
