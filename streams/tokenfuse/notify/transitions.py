"""From alert and control records to transitions: what is worth telling a person, once.

- An alert is a transition by itself: `fired`, or `cleared` for kinds ending in `_cleared` or
  `-cleared` (the worker's forecast_cleared). Its alert_id is deterministic, so a replayed alert is dropped as seen.
- Control states are levels, not events: the notifier keeps each scope's last state and tells
  `blocked` when a scope enters `block` and `released` when it leaves it. A repeated state says
  nothing new. States are ordered by their signed `version`, as runtimes order them: a replayed
  older state (an old `allow` after a newer block) is skipped, never told as a release.
- Records older than the stale limit, and blocks that already expired, are skipped: a notifier
  started on an old deployment must not page anyone about last week.

What was learnt from a record only becomes part of the saved state once the record's offset is
committed (`commit`), so a restart resumes from the committed offsets with exactly the state
those offsets imply and re-derives the same transitions from the records it reads again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

EVENTS = ("fired", "cleared", "blocked", "released")
SEVERITIES = ("info", "warning", "critical")
_ACTION_SEVERITY = {"block": "critical", "throttle": "warning", "warn": "warning", "alert": "info"}
_KIND_SEVERITY = {"manual": "critical", "forecast": "warning", "loop": "warning", "spike": "warning",
                  "anomaly": "warning"}


@dataclass(frozen=True, order=True)
class Source:
    """Where a record came from; its offset is committed once every delivery it caused is done."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Transition:
    id: str  # stable across replays: receivers and the notifier dedupe on it
    event: str  # one of EVENTS
    kind: str  # the alert kind; for control states `threshold` (budget) or `manual`
    scope: str
    severity: str
    occurred_at: int  # epoch ms
    source: Source | None = None
    budget_id: str | None = None
    metric: str | None = None
    spent: int | None = None
    limit: int | None = None
    threshold_percent: int | None = None
    action: str | None = None
    window_start: int | None = None
    window_end: int | None = None
    until: int | None = None
    eta: int | None = None
    message: str = ""

    @property
    def ends_at(self) -> int | None:
        """When this state ends by itself (a window or a block running out), if known."""
        return self.until if self.event == "blocked" else self.window_end

    def as_dict(self) -> dict[str, Any]:
        """The JSON form receivers get (webhook bodies, the DLQ)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "source"}


@dataclass(frozen=True)
class Skipped:
    reason: str  # duplicate | stale | no_transition | older


@dataclass(frozen=True)
class Enforced:
    """A scope's last enforcement level as the notifier knows it, with the version that set it."""

    level: str
    version: int


@dataclass
class _Change:
    source: Source
    table: str  # "scopes" | "seen"
    key: str
    value: Any


@dataclass
class Tracker:
    """Turns records into transitions. `scopes` and `seen` are the committed state (persisted);
    the live view adds what was read since."""

    stale_after_ms: int
    scopes: dict[str, Enforced] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # alert id -> created_at
    _live_scopes: dict[str, Enforced] = field(default_factory=dict)
    _live_seen: dict[str, int] = field(default_factory=dict)
    _pending: list[_Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._live_scopes, self._live_seen = dict(self.scopes), dict(self.seen)

    def alert(self, record: Mapping[str, Any], source: Source | None, now_ms: int) -> Transition | Skipped:
        alert_id = record["alert_id"]
        if alert_id in self._live_seen:
            return Skipped("duplicate")
        if record["created_at"] < now_ms - self.stale_after_ms:
            return Skipped("stale")
        self._change(source, "seen", alert_id, record["created_at"])
        kind, cleared = record["kind"], record["kind"].endswith(("_cleared", "-cleared"))
        base = kind.removesuffix("_cleared").removesuffix("-cleared")
        severity = _KIND_SEVERITY.get(base) or _ACTION_SEVERITY.get(record.get("action") or "alert", "info")
        return Transition(
            id=f"{'cleared' if cleared else 'fired'}:{alert_id}", event="cleared" if cleared else "fired",
            kind=base, scope=record["scope"], severity=severity, occurred_at=record["created_at"], source=source,
            budget_id=record.get("budget_id"), metric=record.get("metric"), spent=record.get("spent"),
            limit=record.get("limit"), threshold_percent=record.get("threshold_percent"),
            action=record.get("action"), window_start=record.get("window_start"),
            window_end=record.get("window_end"), eta=record.get("eta_p50", record.get("eta")), message=record.get("message") or "")

    def control(self, state: Mapping[str, Any], source: Source | None, now_ms: int) -> Transition | Skipped:
        scope, level, version = state["scope"], state["state"], state["version"]
        known = self._live_scopes.get(scope)
        if known is not None and version <= known.version:
            return Skipped("older")
        before = known.level if known is not None else None
        until = state.get("until")
        if level == "block" and until is not None and until <= now_ms:
            return Skipped("stale")  # expired already: runtimes released themselves
        if state["issued_at"] < now_ms - self.stale_after_ms:
            return Skipped("stale")
        self._change(source, "scopes", scope, Enforced(level, version))
        if level == "block" and before != "block":
            event = "blocked"
        elif level != "block" and before == "block":
            event = "released"
        else:
            return Skipped("no_transition")
        return Transition(
            id=f"{event}:{scope}:{version}", event=event,
            kind="threshold" if state.get("budget_id") else "manual", scope=scope, severity="critical",
            occurred_at=state["issued_at"], source=source, budget_id=state.get("budget_id"),
            metric=state.get("metric"), spent=state.get("spent"), limit=state.get("limit"),
            window_start=state.get("window_start"), until=until if event == "blocked" else None,
            message=state.get("reason") or "")

    def _change(self, source: Source | None, table: str, key: str, value: Any) -> None:
        live = self._live_scopes if table == "scopes" else self._live_seen
        live[key] = value
        if source is None:
            getattr(self, table)[key] = value
        else:
            self._pending.append(_Change(source, table, key, value))

    def commit(self, next_offsets: Mapping[tuple[str, int], int], now_ms: int) -> None:
        """Fold what was read below the committed offsets into the committed state; forget alert
        ids older than the stale limit (their records would be skipped as stale anyway)."""
        keep = []
        for change in self._pending:
            s = change.source
            if s.offset < next_offsets.get((s.topic, s.partition), -1):
                getattr(self, change.table)[change.key] = change.value
            else:
                keep.append(change)
        self._pending = keep
        horizon = now_ms - self.stale_after_ms
        for table in (self.seen, self._live_seen):
            for alert_id in [a for a, created in table.items() if created < horizon]:
                del table[alert_id]
