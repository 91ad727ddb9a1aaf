"""The notifier's saved state: each scope's last enforcement state and the alert ids already
told (both as of the committed offsets), and which messages each channel already received (so a
record re-read after a crash is not sent again to a channel that got it). One JSON file,
replaced atomically; written before the offsets are committed."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenfuse.errors import ConfigError
from tokenfuse.notify.transitions import Enforced


@dataclass
class SavedState:
    scopes: dict[str, Enforced] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)  # "channel|message id" -> epoch ms


def load_state(path: Path) -> SavedState:
    if not path.exists():
        return SavedState()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        scopes = {scope: _enforced(value) for scope, value in raw["scopes"].items()}
        return SavedState(scopes=scopes, seen=dict(raw["seen"]), delivered=dict(raw["delivered"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable notifier state ({exc}); move it away to start afresh "
                          "(blocks in force are then told again, releases of older blocks are not)") from None


def _enforced(value: Any) -> Enforced:
    """A saved scope level; files from before versions were kept hold the level alone (version 0:
    any signed state read next supersedes it)."""
    if isinstance(value, str):
        return Enforced(value, 0)
    return Enforced(str(value["level"]), int(value["version"]))


def save_state(path: Path, state: SavedState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
