"""HMAC signatures on the records that carry authority: control states (signed by the worker
and operators, verified by every runtime) and budgets (signed by operators, verified by the worker).

signature = HMAC-SHA256(key, context || 0x00 || Avro body of the record with signature = b"")

`context` is the deployment id (Settings.deployment): a record signed for staging does not verify
in production even where both share a key. Runtimes in any language can check it with the .avsc,
the key and the deployment id.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Mapping

from tokenfuse.errors import SignatureError
from tokenfuse.kafka.codec import codec


@dataclass(frozen=True)
class Signer:
    """The key a publisher signs with, and the deployment it signs for."""

    key_id: str
    key: bytes = field(repr=False)
    deployment: str


@dataclass(frozen=True)
class Verifier:
    """The keys a reader accepts (id -> secret; several during a rotation) in its deployment."""

    keys: Mapping[str, bytes] = field(repr=False)
    deployment: str


def _mac(schema: str, record: Mapping[str, Any], key: bytes, deployment: str) -> bytes:
    body = codec(schema).encode_body({**record, "signature": b""})
    return hmac.new(key, deployment.encode() + b"\x00" + body, hashlib.sha256).digest()


def sign_record(schema: str, record: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """A copy of `record` with key_id and signature set."""
    signed = {**record, "key_id": signer.key_id}
    signed["signature"] = _mac(schema, signed, signer.key, signer.deployment)
    return signed


def verify_record(schema: str, record: Mapping[str, Any], verifier: Verifier, what: str) -> None:
    """Raise SignatureError unless `record` is signed by one of the verifier's keys for its deployment."""
    signature = record.get("signature") or b""
    if not signature:
        raise SignatureError(f"unsigned {what}")
    key = verifier.keys.get(record.get("key_id", ""))
    if key is None:
        raise SignatureError(f"{what} signed by unknown key {record.get('key_id')!r}")
    if not hmac.compare_digest(_mac(schema, record, key, verifier.deployment), signature):
        raise SignatureError(f"forged {what}: signature does not verify (another key or deployment?)")


def sign(state: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    return sign_record("ControlState", state, signer)


def encode_signed(state: Mapping[str, Any], signer: Signer) -> bytes:
    return codec("ControlState").encode(sign(state, signer))


def verify(state: Mapping[str, Any], verifier: Verifier) -> None:
    verify_record("ControlState", state, verifier, f"control state for {state.get('scope')!r}")


def decode_verified(data: bytes, verifier: Verifier) -> dict[str, Any]:
    """Decode a control-topic value and verify it; DecodeError or SignatureError otherwise."""
    state = codec("ControlState").decode(data)
    verify(state, verifier)
    return state


def newer(state: Mapping[str, Any], than: Mapping[str, Any] | None) -> bool:
    """Does `state` supersede `than` (same scope)? Strictly higher version only: an older state
    replayed, or the same one read again, changes nothing."""
    return than is None or state["version"] > than["version"]


def next_version(now_ms: int, *known: int) -> int:
    """The version of a scope's next state: a hybrid logical clock. At least the wall clock, so a
    publisher that lost its memory of a scope (an expired record, a fresh operator shell) still
    outranks what runtimes saw before; above every version it knows, so clocks that lag never
    make a new state look older."""
    return max([now_ms, *(v + 1 for v in known)])
