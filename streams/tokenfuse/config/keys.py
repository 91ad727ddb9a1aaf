"""HMAC key lists from the environment: `id1:secret1,id2:secret2`.

Why ids: a record names the key that signed it (key_id), so a reader holding several keys during
a rotation knows which one to verify with. Every secret must be at least MIN_KEY_BYTES long: a
short key is guessable offline from one signed record.
"""

from __future__ import annotations

import re

MIN_KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def parse_keyring(text: str) -> dict[str, bytes]:
    """Key id -> secret, in the order given. ValueError names every bad entry (never a secret)."""
    keys: dict[str, bytes] = {}
    problems: list[str] = []
    for i, entry in enumerate(e.strip() for e in text.split(",")):
        key_id, sep, secret = entry.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            problems.append(f"entry {i + 1} is not id:secret (id of letters, digits and . _ -)")
        elif len(secret.encode()) < MIN_KEY_BYTES:
            problems.append(f"key {key_id!r} is {len(secret.encode())} bytes; at least {MIN_KEY_BYTES} are required")
        elif key_id in keys:
            problems.append(f"key id {key_id!r} appears twice")
        else:
            keys[key_id] = secret.encode()
    if problems:
        raise ValueError("; ".join(problems))
    if not keys:
        raise ValueError("no keys")
    return keys
