"""The worker's control decisions in order: each state it publishes outranks the newest one
known for the scope (its own, another publisher's, an operator's), and a live manual state
stands until the operator releases it or its `until` passes."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tokenfuse.control.signing import Signer, Verifier, decode_verified
from tokenfuse.usage.windows import parse_window
from tokenfuse.worker.engine.deltas import Delta
from tokenfuse.worker.engine.record import ScopeRecord
from tokenfuse.worker.engine.rules import BudgetIndex
from tokenfuse.worker.engine.settle import Settler
from tokenfuse.worker.control_view import ControlView

SIGNER = Signer("w", b"worker-key-of-at-least-thirty-two-bytes", "unit")
HOUR = parse_window("1h")
INDEX = BudgetIndex([{"id": "cap", "scope": "agent:*", "metric": "input_tokens", "window": "1h", "timezone": "UTC",
                      "limit": 100, "thresholds": [{"percent": 100, "action": "block"}]}])


class KnownStates(ControlView):
    """The view's rules over states held in memory (the real one follows the topic)."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}

    def newest(self, scope: str) -> dict[str, Any] | None:
        return self.states.get(scope)


def published(out) -> list[dict[str, Any]]:
    return [decode_verified(o.value, Verifier({"w": SIGNER.key}, "unit")) for o in out if o.topic == "control"]


def settle(settler: Settler, record: ScopeRecord, tokens: int, now: int) -> list[dict[str, Any]]:
    deltas = [Delta("agent:a", now - now % 1000, input_tokens=tokens, events=1)] if tokens else []
    return published(settler.settle("agent:a", record, deltas, INDEX, now))


def test_each_published_state_has_a_higher_version_than_any_known_for_the_scope():
    view = KnownStates()
    settler = Settler({HOUR.name: HOUR}, Counter(), SIGNER, control=view)
    record = ScopeRecord()
    now = 3_600_000
    view.states["agent:a"] = {"state": "allow", "source": "worker", "version": now + 50_000, "until": None}
    [block] = settle(settler, record, 150, now)  # another publisher's state is newer than this clock
    assert block["state"] == "block" and block["version"] == now + 50_001 and record.version == block["version"]
    view.states["agent:a"] = block
    [allow] = settle(settler, record, 0, 2 * now + 1)  # the next window: released
    assert allow["state"] == "allow" and allow["version"] == 2 * now + 1 > block["version"]


def test_a_live_manual_kill_stands_until_released_or_expired():
    view = KnownStates()
    settler = Settler({HOUR.name: HOUR}, Counter(), SIGNER, control=view)
    record = ScopeRecord()
    now = 3_600_000
    kill = {"state": "block", "source": "manual", "version": now + 10, "until": now + 120_000}
    view.states["agent:a"] = kill
    assert settle(settler, record, 10, now) == []  # within budget: the worker would say allow
    assert record.published.state == "block" and record.version == now + 10
    assert "agent:a" in settler.watched  # swept, so the kill's end brings the worker's decision back

    view.states["agent:a"] = {**kill, "state": "allow", "version": now + 20}  # tokenfuse release
    [allow] = settle(settler, record, 0, now + 30)
    assert allow["state"] == "allow" and allow["version"] == now + 30

    view.states["agent:a"] = {**kill, "version": now + 40}
    assert settle(settler, record, 0, now + 50) == []
    [after] = settle(settler, record, 0, now + 120_000)  # its until passed
    assert after["state"] == "allow" and after["version"] > now + 40


def test_the_version_survives_the_changelog():
    record = ScopeRecord(version=1_234)
    assert ScopeRecord.from_json(record.to_json()).version == 1_234
    assert ScopeRecord.from_json({"m": ["allow", None, None]}).version == 0  # a record from before versions
