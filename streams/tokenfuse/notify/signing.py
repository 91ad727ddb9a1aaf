"""Signed webhooks: the receiver can tell a tokenfuse notification from a forgery or a replay.

Each request carries `X-Tokenfuse-Timestamp` (unix seconds) and `X-Tokenfuse-Signature:
v1=<hex>`, the HMAC-SHA256 with the channel's secret of `<timestamp>.` followed by the raw
body. The timestamp is inside the MAC, so a captured request cannot be re-dated; a receiver
rejects timestamps older than its tolerance and drops ids (`X-Tokenfuse-Id`, also in the body)
it saw within that tolerance. `verify_webhook` is that check, and docs/notifications.md shows it
in a few lines of plain Python for receivers that do not install tokenfuse.
"""

from __future__ import annotations

import hashlib
import hmac

from tokenfuse.errors import SignatureError

TIMESTAMP_HEADER = "X-Tokenfuse-Timestamp"
SIGNATURE_HEADER = "X-Tokenfuse-Signature"
ID_HEADER = "X-Tokenfuse-Id"
DEFAULT_TOLERANCE_S = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify_webhook(secret: bytes, body: bytes, timestamp: str | None, sig: str | None, now: float,
                   tolerance_s: int = DEFAULT_TOLERANCE_S) -> None:
    """Raise SignatureError unless `sig` signs `body` at `timestamp` and the timestamp is within
    `tolerance_s` of `now` (either side: clocks drift)."""
    if not timestamp or not sig:
        raise SignatureError("unsigned webhook: timestamp or signature header missing")
    try:
        when = int(timestamp)
    except ValueError:
        raise SignatureError(f"webhook timestamp {timestamp!r} is not unix seconds") from None
    if not hmac.compare_digest(signature(secret, when, body), sig):
        raise SignatureError("forged webhook: the signature does not match the body and timestamp")
    if abs(now - when) > tolerance_s:
        raise SignatureError(f"replayed webhook: signed {now - when:.0f}s ago, tolerance {tolerance_s}s")
