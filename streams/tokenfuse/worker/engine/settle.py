"""Settling one scope: add its deltas, check its budgets, decide what to publish.

Synchronous on purpose. The account agent and the sweep timer both settle scopes, on the same
in-memory records; a settle with an `await` inside could interleave with the other and lose an
update (one writes back a record the other changed meanwhile). Here a record is read, changed and
written back with no await in between, and the messages to publish are returned for the caller
to send afterwards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

from tokenfuse.kafka.codec import codec
from tokenfuse.control.signing import encode_signed
from tokenfuse.usage.windows import WindowSpec
from tokenfuse.worker.engine.decisions import control_state, evaluate
from tokenfuse.worker.engine.rules import BudgetIndex, effective
from tokenfuse.worker.engine.record import apply_delta, atom_ms, current_window, merge_deltas
from tokenfuse.worker.engine.deltas import Delta


@dataclass(frozen=True)
class Output:
    """A message to publish: `topic` is "alerts" or "control"."""

    topic: str
    key: bytes
    value: bytes


class Settler:
    def __init__(self, specs: Mapping[str, WindowSpec], stats: Counter[str], control_key: bytes,
                 control_key_id: str):
        self.specs = specs
        self.stats = stats
        self.control_key = control_key
        self.control_key_id = control_key_id
        # Scopes not in the allow state: the sweep re-checks them when their windows end.
        self.watched: set[str] = set()
        self._atom: tuple[int, int] = (0, 0)  # (number of specs, their atom_ms)

    def _atom_ms(self) -> int:
        """atom_ms of the tracked windows, computed again only when a window is added (the app
        adds calendar windows in new time zones as budgets ask for them)."""
        if self._atom[0] != len(self.specs):
            self._atom = (len(self.specs), atom_ms(self.specs.values()))
        return self._atom[1]

    def settle(self, scope: str, record: dict[str, Any], scope_deltas: list[Delta], index: BudgetIndex,
               now: int) -> list[Output]:
        """Add the scope's deltas (if any) to `record` in place and check its budgets after each
        one (or once, on the current windows, when there are none: a budget changed or a window
        ended). Returns an Alert per threshold crossed and a signed ControlState if the scope's
        effective state changed."""
        budgets = index.for_scope(scope)
        if not budgets and len(scope_deltas) > 1:
            scope_deltas = merge_deltas(scope_deltas, self._atom_ms())
        checks: list[tuple[Any, Any, str]] = []  # (budget, window, event id)
        for delta in scope_deltas:
            evicted = False
            for spec in self.specs.values():
                if not apply_delta(record, delta, spec):
                    evicted = True
                    continue
                watching = [b for b in budgets if b.window.name == spec.name]
                if watching:
                    window = current_window(record, spec, delta.second_ms)
                    checks += [(b, window, delta.last_event_id) for b in watching]
            if evicted:
                # On time for its input partition, but another partition has moved this scope's
                # short windows on past it: it counts in the longer windows only.
                self.stats["evicted_window_events"] += delta.events
        if not scope_deltas:
            checks = [(b, current_window(record, self.specs[b.window.name], now), "") for b in budgets
                      if b.window.name in self.specs]
        out = []
        for budget, window, event_id in checks:
            new_alerts, record["e"][budget.id] = evaluate(budget, scope, window, record, event_id, now)
            for alert in new_alerts:
                self.stats["alerts"] += 1
                out.append(Output("alerts", scope.encode(), codec("Alert").encode(alert)))
        ids = {b.id for b in budgets}
        record["e"] = {k: e for k, e in record["e"].items() if e["until"] > now and k in ids}
        chosen = effective(record["e"], now)
        emitted = [chosen["state"], chosen["budget_id"], chosen["until"]] if chosen else ["allow", None, None]
        if emitted != record["m"]:
            self.stats["control_changes"] += 1
            record["m"] = emitted
            out.append(Output("control", scope.encode(), encode_signed(
                control_state(scope, chosen, now), self.control_key, self.control_key_id)))
        if emitted[0] != "allow":
            self.watched.add(scope)
        return out
