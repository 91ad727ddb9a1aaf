"""Operators' feedback on alerts: `tokenfuse alerts ack ALERT_ID --expected --until 2h --reason ...`.

An ack names the alert; the alert's kind, scope and budget come from the ClickHouse history. It is
published, signed with the control key like a control state, on the compacted acks topic under
`budget|kind|scope`, so the latest ack per detector and scope is the one in force: with
`expected`, that detector stays quiet for that budget and scope until `until` (`is_quiet`, what
the worker asks before raising a forecast, loop or spike alert). Without `--expected` the ack is
feedback only (a real problem, seen). The sink stores every ack in `alert_acks` with who and why.
"""

from __future__ import annotations

import getpass
import time
from typing import Any, Callable, Mapping

from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.control.manual import parse_until
from tokenfuse.control.signing import sign_record
from tokenfuse.errors import ConfigError
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.produce import produce_and_wait

Query = Callable[[str, dict[str, Any] | None], dict[str, Any]]


def ack_key(budget_id: str | None, kind: str, scope: str) -> str:
    return f"{budget_id or ''}|{kind}|{scope}"


def is_quiet(acks: Mapping[str, Mapping[str, Any]], budget_id: str, kind: str, scope: str, now_ms: int) -> bool:
    """Whether an operator acknowledged this detector's alerts on this scope as expected, until
    a time not yet reached. `acks`: the acks topic's latest value per key (verified)."""
    ack = acks.get(ack_key(budget_id, kind, scope))
    return bool(ack and ack["expected"] and (ack["until"] or 0) > now_ms)


def find_alert(query: Query, alert_id: str) -> dict[str, Any]:
    """The kind, scope and budget of an alert in the history; ConfigError if it is not there."""
    result = query("SELECT kind, scope, budget_id FROM alerts WHERE alert_id = {id:String} LIMIT 1", {"id": alert_id})
    if not result["rows"]:
        raise ConfigError(f"no alert {alert_id!r} in the history (is the sink running? "
                          "`tokenfuse sql \"SELECT alert_id FROM alerts ORDER BY created_at DESC LIMIT 10\"`)")
    return dict(zip(result["columns"], result["rows"][0]))


def build_ack(alert_id: str, alert: Mapping[str, Any], *, expected: bool, until: str | None, reason: str,
              acked_by: str | None, now_ms: int) -> dict[str, Any]:
    """The AlertAck record (unsigned). An expected ack needs an expiry: nobody silences a
    detector forever by accident."""
    if expected and until is None:
        raise ConfigError("--expected needs --until (a duration like 2h or an ISO time): how long to stay quiet")
    if not reason.strip():
        raise ConfigError("--reason must say why (it is stored with the ack)")
    return {"alert_id": alert_id, "kind": alert["kind"], "scope": alert["scope"], "budget_id": alert["budget_id"],
            "expected": expected, "until": parse_until(until, now_ms), "reason": reason,
            "acked_by": acked_by or getpass.getuser(), "acked_at": now_ms}


def publish_ack(settings: Settings, ack: Mapping[str, Any]) -> dict[str, Any]:
    """Sign and publish an ack on the acks topic; return the signed record."""
    require(settings, "operator")
    signed = sign_record("AlertAck", ack, settings.control_signer())
    produce_and_wait(settings, settings.topic("acks"), ack_key(ack["budget_id"], ack["kind"], ack["scope"]).encode(),
                     codec("AlertAck").encode(signed))
    return signed


def now_ms() -> int:
    return int(time.time() * 1000)
