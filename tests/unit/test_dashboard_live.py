"""Which control states the dashboard lists as restricting a scope now."""

from __future__ import annotations

from tokenfuse.dashboard.live import restricted_states

NOW = 1_800_000_000_000


def state(scope, kind, issued_at, until=None):
    return {"scope": scope, "state": kind, "issued_at": issued_at, "until": until, "signature": b"mac",
            "reason": "r", "budget_id": None}


def test_blocks_then_throttles_then_warnings_newest_first_and_expired_or_allowed_ones_left_out():
    states = [state("agent:a", "warn", NOW - 5), state("agent:b", "block", NOW - 9, until=NOW + 1000),
              state("agent:c", "throttle", NOW - 1), state("agent:d", "block", NOW - 1),
              state("agent:e", "block", NOW - 2, until=NOW),  # released itself at `until`
              state("agent:f", "allow", NOW)]
    shown = restricted_states(states, NOW)
    assert [s["scope"] for s in shown] == ["agent:d", "agent:b", "agent:c", "agent:a"]
    assert all("signature" not in s for s in shown)
