"""HMAC signatures on control states: the pipeline signs, every runtime verifies.

signature = HMAC-SHA256(key, Avro body of the ControlState with signature = b"").
Runtimes in any language can check it with the .avsc and the shared key. Operators' alert acks
(AlertAck) are signed the same way (`schema="AlertAck"`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping

from tokenfuse.kafka.codec import codec
from tokenfuse.errors import SignatureError


def _mac(state: Mapping[str, Any], key: bytes, schema: str = "ControlState") -> bytes:
    body = codec(schema).encode_body({**state, "signature": b""})
    return hmac.new(key, body, hashlib.sha256).digest()


def sign(state: Mapping[str, Any], key: bytes, key_id: str = "default", schema: str = "ControlState") -> dict[str, Any]:
    """A copy of `state` with key_id and signature set."""
    signed = {**state, "key_id": key_id}
    signed["signature"] = _mac(signed, key, schema)
    return signed


def encode_signed(state: Mapping[str, Any], key: bytes, key_id: str = "default") -> bytes:
    return codec("ControlState").encode(sign(state, key, key_id))


def verify(state: Mapping[str, Any], keys: Mapping[str, bytes], schema: str = "ControlState") -> None:
    """Raise SignatureError unless `state` carries a valid signature by one of `keys` (id -> key)."""
    signature = state.get("signature") or b""
    if not signature:
        raise SignatureError(f"unsigned control state for {state.get('scope')!r}")
    key = keys.get(state.get("key_id", "default"))
    if key is None:
        raise SignatureError(f"control state for {state.get('scope')!r} signed by unknown key {state.get('key_id')!r}")
    if not hmac.compare_digest(_mac(state, key, schema), signature):
        raise SignatureError(f"forged control state for {state.get('scope')!r}: signature does not verify")


def decode_verified(data: bytes, keys: Mapping[str, bytes]) -> dict[str, Any]:
    """Decode a control-topic value and verify it; DecodeError or SignatureError otherwise."""
    state = codec("ControlState").decode(data)
    verify(state, keys)
    return state
