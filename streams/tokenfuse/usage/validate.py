"""Checks a decoded UsageEvent must pass before it may count toward any budget.

The same field rules (tokenfuse.usage.scopes.FIELDS) refuse bad values in the SDK at the call;
here they catch what other producers (other languages, old SDKs, attackers) write to the topic."""

from __future__ import annotations

from typing import Any

from tokenfuse.errors import DecodeError
from tokenfuse.usage.scopes import field_problem, tags_problem

# Far above any real single LLM call; anything larger is a bug or an attack, not usage.
MAX_TOKENS_PER_EVENT = 50_000_000
MAX_COST_MICRO_USD = 100_000 * 1_000_000
MAX_FUTURE_MS = 3_600_000
_REQUIRED_TEXT = ("event_id", "org", "team", "agent", "model", "provider")
_OPTIONAL_TEXT = ("run", "user")  # None or "" = not given


# Identities (every id field but the event's own, and the tags) already accepted: the same
# org/team/agent/run/model/tags come back in every batch, and checking them field by field cost
# more than decoding the event. Bounded: cleared when full.
_ACCEPTED_MAX = 200_000
_accepted: set[tuple[Any, ...]] = set()


def _identity(event: dict[str, Any]) -> tuple[Any, ...] | None:
    tags = event.get("tags") or {}
    if not isinstance(tags, dict):
        return None
    try:
        identity = (event["org"], event["team"], event["agent"], event["model"], event["provider"],
                    event.get("run"), event.get("user"), *tags.items())
        hash(identity)
    except TypeError:  # an unhashable value: checked below, never remembered
        return None
    return identity


def usage_problem(event: dict[str, Any]) -> str | None:
    """What makes the event's ids or tags unacceptable (aliasing, size), or None."""
    problem = field_problem("event_id", event["event_id"])  # unique: not worth remembering
    if problem:
        return problem
    identity = _identity(event)
    if identity is not None and identity in _accepted:
        return None
    problem = _identity_problem(event)
    if problem is None and identity is not None:
        if len(_accepted) >= _ACCEPTED_MAX:
            _accepted.clear()
        _accepted.add(identity)
    return problem


def _identity_problem(event: dict[str, Any]) -> str | None:
    for name in _REQUIRED_TEXT[1:]:
        problem = field_problem(name, event[name])
        if problem:
            return problem
    for name in _OPTIONAL_TEXT:
        if event.get(name):
            problem = field_problem(name, event[name])
            if problem:
                return problem
    return tags_problem(event.get("tags") or {})


def validate_usage(event: dict[str, Any], now_ms: int) -> None:
    """Raise DecodeError(reason) when the event is not acceptable usage."""
    problem = usage_problem(event)
    if problem:
        raise DecodeError(problem)
    for name in ("input_tokens", "output_tokens", "cached_tokens"):
        value = event[name]
        if value < 0:
            raise DecodeError(f"{name} is negative ({value})")
        if value > MAX_TOKENS_PER_EVENT:
            raise DecodeError(f"{name} is absurd ({value} > {MAX_TOKENS_PER_EVENT})")
    if event["cached_tokens"] > event["input_tokens"]:
        raise DecodeError("cached_tokens exceeds input_tokens")
    cost = event["cost_micro_usd"]
    if cost is not None and not 0 <= cost <= MAX_COST_MICRO_USD:
        raise DecodeError(f"cost_micro_usd out of range ({cost})")
    if event["event_time"] <= 0 or event["event_time"] > now_ms + MAX_FUTURE_MS:
        raise DecodeError(f"event_time {event['event_time']} is not a time in the last years or the next hour")
