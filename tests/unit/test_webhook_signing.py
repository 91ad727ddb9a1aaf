"""Webhook signatures: a signed body verifies; a forged body, a re-dated or a replayed request
does not. Both the library helper and the recipe docs/notifications.md gives receivers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tokenfuse.errors import SignatureError
from tokenfuse.notify.signing import ID_HEADER, signed_headers, verify_webhook

SECRET = b"webhook-secret"
BODY = b'{"id":"fired:b1|agent:x|0|100","event":"fired"}'
DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def documented_verify():
    """The `verify` function of the receiver recipe, executed as the docs print it."""
    text = DOC.read_text()
    section = text[text.index("### Verifying a webhook"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["verify"]


def signed(at: float, body: bytes = BODY) -> dict[str, str]:
    return {**signed_headers(SECRET, int(at), body), ID_HEADER: "fired:b1|agent:x|0|100"}


def test_the_helper_accepts_a_fresh_signed_body():
    now = time.time()
    h = signed(now)
    verify_webhook(SECRET, BODY, h["X-Tokenfuse-Timestamp"], h["X-Tokenfuse-Signature"], now)


@pytest.mark.parametrize("case", ["forged body", "wrong secret", "re-dated", "replayed late", "unsigned"])
def test_the_helper_rejects(case):
    now = time.time()
    h, body, secret, at = signed(now), BODY, SECRET, now
    if case == "forged body":
        body = BODY.replace(b"fired", b"cleared")
    elif case == "wrong secret":
        secret = b"guess"
    elif case == "re-dated":  # a captured request with a fresh timestamp: the MAC covers it
        h["X-Tokenfuse-Timestamp"] = str(int(now) + 600)
        at = now + 600
    elif case == "replayed late":
        at = now + 301
    else:
        h["X-Tokenfuse-Signature"] = ""
    with pytest.raises(SignatureError):
        verify_webhook(secret, body, h["X-Tokenfuse-Timestamp"], h["X-Tokenfuse-Signature"], at)


def test_the_documented_recipe_accepts_once_and_rejects_forgeries_and_replays():
    verify = documented_verify()
    seen: dict = {}
    h = signed(time.time())
    assert verify(SECRET, BODY, h, seen)
    assert not verify(SECRET, BODY, h, seen), "the same request again is a replay"
    assert not verify(SECRET, BODY.replace(b"fired", b"cleared"), {**h, ID_HEADER: "other"}, seen)
    assert not verify(b"guess", BODY, {**h, ID_HEADER: "other"}, seen)
    old = {**signed(time.time() - 301), ID_HEADER: "old"}
    assert not verify(SECRET, BODY, old, seen), "too old: a replay after the window"
    assert not verify(SECRET, BODY, {ID_HEADER: "x"}, seen), "unsigned"
