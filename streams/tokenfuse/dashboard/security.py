"""Who may talk to the dashboard, and who may kill or release a scope from it.

- It listens on 127.0.0.1 only, and answers only requests whose Host header names the loopback
  (127.0.0.1 or localhost): a web page elsewhere cannot reach it through DNS rebinding
  (its requests would carry the attacker's host name).
- Kill and release are off unless TOKENFUSE_DASHBOARD_OPERATOR=1. Then every POST needs the
  operator token in the `X-Tokenfuse-Token` header (a custom header: a cross-site form cannot
  send it, and the dashboard allows no cross-origin request), and an Origin, if the browser
  sends one, naming this dashboard. The token lives in a file readable by its owner only
  (0600), created on first start.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError

ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
TOKEN_HEADER = "x-tokenfuse-token"


def token_path(settings: Settings) -> Path:
    return settings.dashboard_token_file or settings.data_dir / "dashboard.token"


def load_token(settings: Settings) -> str:
    """The operator token from its file, created (0600, random) if missing. A file that others
    may read, or too short a token, is a ConfigError."""
    path = token_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile: read theirs
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path}: mode {mode:o} lets others read the dashboard's operator token; "
                          f"run `chmod 600 {path}`")
    token = path.read_text().strip()
    if len(token) < 16:
        raise ConfigError(f"{path}: the operator token must be at least 16 characters")
    return token


def post_problem(headers: dict[str, str], token: str | None) -> str | None:
    """Why a POST is refused, or None: no operator mode, a wrong token, a foreign Origin."""
    if token is None:
        return "kill and release are off on this dashboard (set TOKENFUSE_DASHBOARD_OPERATOR=1)"
    if not hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), token.encode()):
        return "missing or wrong operator token"
    origin = headers.get("origin")
    if origin is not None and origin != f"http://{headers.get('host', '')}":
        return f"cross-origin request from {origin!r} refused"
    return None
