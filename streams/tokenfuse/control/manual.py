"""Operators' manual kill switch: publish a signed block or allow for any scope, through the same
control topic the pipeline uses.

A manual state is marked `source = manual` and ordered with the worker's states by its version
(control/signing.py next_version): the operator's command reads the scope's newest state first
and outranks it. The worker follows these states and does not override a live manual one
(worker/control_view.py)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.errors import BrokerUnavailable, ConfigError
from tokenfuse.usage.scopes import validate_scope
from tokenfuse.control.signing import decode_verified, encode_signed, newer, next_version
from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.kafka.produce import produce_and_wait
from tokenfuse.kafka.topics import ensure_broker
from tokenfuse.usage.windows import parse_duration_ms


def parse_until(text: str | None, now_ms: int) -> int | None:
    """`2h`-style duration from now, or an ISO-8601 time (UTC if no offset); None = no expiry."""
    if text is None:
        return None
    try:
        return now_ms + parse_duration_ms(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--until {text!r} is neither a duration (30m, 2h, 1d) nor an ISO time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    until = int(when.timestamp() * 1000)
    if until <= now_ms:
        raise ConfigError(f"--until {text!r} is in the past")
    return until


def publish_manual_state(settings: Settings, scope: str, state: str, reason: str,
                         until: str | None = None) -> dict:
    """Sign and publish a manual `block` or `allow` for one concrete scope key; return the state."""
    problem = validate_scope(scope)
    if problem or "*" in scope:
        raise ConfigError(f"cannot {'kill' if state == 'block' else 'release'} {scope!r}: "
                          + (problem or "name one scope, not a '*' pattern"))
    require(settings, "operator")
    now = int(time.time() * 1000)
    expiry = parse_until(until, now)
    ensure_broker(settings)
    current = current_states(settings).get(scope)
    record = {"scope": scope, "state": state, "reason": f"manual: {reason}", "until": expiry, "issued_at": now,
              "source": "manual", "version": next_version(now, current["version"] if current else 0)}
    publish_states(settings, [encode_signed(record, settings.control_signer())], [scope])
    return record


def current_states(settings: Settings, timeout: float = 30.0) -> dict[str, dict]:
    """The newest verified state of every scope in the control topic now."""
    follower = CompactedTopicFollower(settings, settings.topic("control"),
                                      lambda data: decode_verified(data, settings.control_verifier()),
                                      ignore_tombstones=True, supersedes=newer)
    try:
        if not follower.wait_caught_up(timeout):
            raise BrokerUnavailable(f"timed out after {timeout:g}s reading {settings.topic('control')}")
        return follower.snapshot()
    finally:
        follower.close()


def publish_states(settings: Settings, values: list[bytes], scopes: list[str]) -> None:
    """Write signed control states (one per scope, in order); raise if any is not delivered."""
    for scope, value in zip(scopes, values):
        produce_and_wait(settings, settings.topic("control"), scope.encode(), value)


def rotate_key(settings: Settings) -> list[str]:
    """Re-sign every state of the control topic not signed with the current key, keeping its
    version (runtimes holding it ignore the copy; runtimes that start after the old key is
    retired read the copy). Returns the scopes re-signed."""
    require(settings, "operator")
    ensure_broker(settings)
    signer = settings.control_signer()
    stale = {scope: state for scope, state in current_states(settings).items() if state["key_id"] != signer.key_id}
    publish_states(settings, [encode_signed(state, signer) for state in stale.values()], list(stale))
    return sorted(stale)
