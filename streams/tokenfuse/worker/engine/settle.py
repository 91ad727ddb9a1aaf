"""Settling one scope: add its deltas, check its budgets, run the detectors, decide what to publish.

Synchronous on purpose. The account stage and its sweep both settle scopes, on the same
in-memory records; a settle with an `await` inside could interleave with the other and lose an
update. Here a record is read, changed and written back with no await in between, and the
messages to publish are returned for the caller to send afterwards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from tokenfuse.control.signing import Signer, encode_signed, next_version
from tokenfuse.kafka.codec import codec
from tokenfuse.usage.windows import Window, WindowSpec
from tokenfuse.worker.engine.deltas import Delta, merge_deltas
from tokenfuse.worker.engine.record import Enforcement, Published, ScopeRecord, merge_grid_ms
from tokenfuse.worker.engine.rules import ActiveBudget, BudgetIndex, control_state, effective, evaluate


@dataclass(frozen=True)
class Output:
    """A message to publish: `topic` is "alerts" or "control"."""

    topic: str
    key: bytes
    value: bytes


@dataclass
class Verdict:
    """What a detector decided for a scope: alerts to publish, and its enforcement entries (they
    replace the detector's previous ones; the ladder picks the most severe of all entries)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    entries: dict[str, Enforcement] = field(default_factory=dict)


class Detector(Protocol):
    """A plug-in of the accounting stage (forecasts, loops, spikes; docs/extending.md). It keeps
    its per-scope states in `record.detectors[name]` by budget: objects with `to_json()` (the
    changelog value holds their JSON; a record recovered from it holds the lists until loaded)."""

    name: str

    def observe(self, scope: str, record: ScopeRecord, deltas: Sequence[Delta], budgets: Sequence[ActiveBudget],
                now_ms: int) -> Verdict:
        """Called after `deltas` (possibly none: the sweep) were added to the record."""
        ...


class ControlStates(Protocol):
    """What the worker knows of the control topic (worker/control_view.py)."""

    def newest(self, scope: str) -> dict[str, Any] | None: ...

    def manual_override(self, scope: str, now_ms: int) -> dict[str, Any] | None: ...


class Settler:
    def __init__(self, specs: Mapping[str, WindowSpec], stats: Counter[str], signer: Signer,
                 detectors: Sequence[Detector] = (), control: ControlStates | None = None):
        self.specs = specs
        self.stats = stats
        self.signer = signer
        self.detectors = list(detectors)
        self.prefixes = tuple(d.name + ":" for d in self.detectors)  # their entries' keys
        self.control = control
        # Scopes not in the allow state: the sweep re-checks them when their windows end.
        self.watched: set[str] = set()
        self._grid: tuple[int, int] = (0, 0)  # (number of specs, their merge grid)

    def _grid_ms(self) -> int:
        """The merge grid of the tracked windows, computed again only when a window is added
        (calendar windows in new time zones are added as budgets ask for them)."""
        if self._grid[0] != len(self.specs):
            self._grid = (len(self.specs), merge_grid_ms(self.specs.values()))
        return self._grid[1]

    def settle(self, scope: str, record: ScopeRecord, deltas: list[Delta], index: BudgetIndex,
               now: int) -> list[Output]:
        """Add the scope's deltas (if any) to `record` in place and check its budgets after each
        one (or once, on the current windows, when there are none: a budget changed or a window
        ended). Returns an Alert per threshold crossed and a signed ControlState if the scope's
        effective state changed."""
        budgets = index.for_scope(scope)
        if not budgets and len(deltas) > 1:
            deltas = merge_deltas(deltas, self._grid_ms())
        checks = self._add(record, deltas, budgets) if deltas else [
            (b, record.window(self.specs[b.window.name], now), "") for b in budgets if b.window.name in self.specs]
        alerts: list[dict[str, Any]] = []
        for budget, window, event_id in checks:
            new_alerts, record.entries[budget.id] = evaluate(budget, scope, window, record, event_id, now)
            alerts += new_alerts
        kept = {b.id for b in budgets}
        # Detectors act for budgets (forecast:, loop:, spike:); a scope without budgets and
        # without their state or entries (most scopes) skips them. Their entries replace the
        # ones they gave before (keys "name:budget"), all in the one pass below.
        detected: dict[str, Enforcement] = {}
        if budgets or record.detectors or record.entries:
            for detector in self.detectors:
                verdict = detector.observe(scope, record, deltas, budgets, now)
                alerts += verdict.alerts
                detected.update(verdict.entries)
            kept.update(detected)
        if record.entries or detected:
            record.entries = {k: e for k, e in record.entries.items()
                              if e.until > now and k in kept and not k.startswith(self.prefixes)}
            record.entries.update((k, e) for k, e in detected.items() if e.until > now)
        out = [Output("alerts", scope.encode(), codec("Alert").encode(alert)) for alert in alerts]
        self.stats["alerts"] += len(alerts)
        out += self._decide(scope, record, now)
        if not record.allowed:
            self.watched.add(scope)
        return out

    def _decide(self, scope: str, record: ScopeRecord, now: int) -> list[Output]:
        """A signed ControlState if the scope's effective state changed. An operator's live manual
        state stands instead (the record remembers it, so its end brings the worker's decision
        back); each state published outranks the newest one known for the scope."""
        manual = self.control.manual_override(scope, now) if self.control is not None else None
        if manual is not None:
            record.published = Published(manual["state"], None, manual["until"])
            record.version = max(record.version, manual["version"])
            return []
        chosen = effective(record.entries, now)
        published = Published(chosen.state, chosen.budget_id, chosen.until) if chosen else Published()
        if published == record.published:
            return []
        self.stats["control_changes"] += 1
        newest = self.control.newest(scope) if self.control is not None else None
        record.version = next_version(now, record.version, newest["version"] if newest else 0)
        record.published = published
        state = {**control_state(scope, chosen, now), "version": record.version}
        return [Output("control", scope.encode(), encode_signed(state, self.signer))]

    def _add(self, record: ScopeRecord, deltas: list[Delta],
             budgets: list[ActiveBudget]) -> list[tuple[ActiveBudget, Window, str]]:
        """Add each delta to every tracked window; the budgets to check after each one."""
        specs = self.specs.values()
        checks = []
        for delta in deltas:
            evicted = record.add(delta, specs)
            if evicted:
                # On time for its input partition, but another partition has moved this scope's
                # short windows on past it: it counts in the longer windows only.
                self.stats["evicted_window_events"] += delta.events
            for b in budgets:
                spec = self.specs.get(b.window.name)
                if spec is not None and spec.name not in evicted:
                    checks.append((b, record.window(spec, delta.second_ms), delta.last_event_id))
        return checks
