"""Operators' manual kill switch: publish a signed block or allow for any scope, through the same
control topic the pipeline uses."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.errors import ConfigError
from tokenfuse.usage.scopes import validate_scope
from tokenfuse.control.signing import encode_signed
from tokenfuse.kafka.produce import produce_and_wait
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
    record = {"scope": scope, "state": state, "reason": f"manual: {reason}", "until": parse_until(until, now),
              "issued_at": now}
    produce_and_wait(settings, settings.topic("control"), scope.encode(),
                     encode_signed(record, settings.control_key.get_secret_value().encode(), settings.control_key_id))
    return record
