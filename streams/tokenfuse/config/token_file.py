"""The token that guards a local HTTP endpoint (the sink's /sql, the worker's pages).

A loopback port is reachable by every user of the machine. So a server writes a new random token
at start to a file in its data folder that only its owner can read (0600), and answers only
requests carrying it as `Authorization: Bearer <token>`. A client proves it runs as the server's
user by reading that file (`read_token`), which must still be the owner's alone: a file others
could read, or one planted by another user, is refused. Scrapers re-read the file at each scrape
(Prometheus: `authorization: {credentials_file: ...}`), so a restart's new token is picked up."""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from tokenfuse.errors import TokenfuseError


class TokenFileError(TokenfuseError):
    """A server's token file cannot be read, or others could read it too."""


def write_token(path: Path) -> str:
    """A new random token in `path`, created 0600 (replaced atomically, so a client never reads
    half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(temporary, path)
    return token


def read_token(path: Path, server: str) -> str:
    """The token of the running `server` (its name, for the error) from `path`."""
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise TokenFileError(f"{path} must belong to you and be readable by you only "
                                 f"(owner uid {info.st_uid}, mode {stat.filemode(info.st_mode)}); restart the {server}")
        return path.read_text().strip()
    except OSError as exc:
        raise TokenFileError(f"cannot read the {server}'s token {path} ({exc.strerror}): run this as the user "
                             f"that runs the {server}, with the same TOKENFUSE_DATA_DIR") from None


def bearer(token: str) -> dict[str, str]:
    """The request header that carries `token`."""
    return {"Authorization": f"Bearer {token}"}


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Does an Authorization header carry `token`? (Compared in constant time.)"""
    scheme, _, offered = (authorization or "").partition(" ")
    return scheme == "Bearer" and hmac.compare_digest(offered.encode(), token.encode())


def refusal(path: Path) -> str:
    """What a server answers (401) to a request without its token."""
    return f"missing or wrong token: send 'Authorization: Bearer <token>' with the token in {path}"
