"""Versioned migrations: deploy/clickhouse/NNN_name.sql, applied in order, each once, recorded in
schema_migrations. Re-running is a no-op; a changed file that was already applied is an error."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

from tokenfuse.errors import ConfigError
from tokenfuse.history.client import History
from tokenfuse.resources import resource_path

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations
(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
ENGINE = MergeTree ORDER BY version"""


def migration_files(folder: Path | None = None) -> list[Path]:
    folder = folder or resource_path("clickhouse")
    return sorted(p for p in folder.glob("*.sql") if _NAME.match(p.name))


def statements(sql: str) -> list[str]:
    """Split a file into statements: `;` at the end of a line ends one; `--` comments dropped."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def migrate(history: History, retention_days: int = 400,
            progress: Callable[[str], None] = lambda _m: None, folder: Path | None = None) -> list[str]:
    """Apply pending migrations; return the names applied."""
    history.command(_LEDGER)
    applied = {row[0]: (row[1], row[2]) for row in
               history.select("SELECT version, name, checksum FROM schema_migrations").rows}
    done = []
    for path in migration_files(folder):
        version = int(path.name[:3])
        text = path.read_text()
        checksum = hashlib.sha256(text.encode()).hexdigest()
        if version in applied:
            if applied[version][1] != checksum:
                raise ConfigError(f"migration {path.name} changed after it was applied; add a new migration instead")
            continue
        progress(f"applying {path.name}")
        for statement in statements(text):
            history.command(statement)
        history.insert("schema_migrations", [[version, path.name, checksum]], ["version", "name", "checksum"],
                       dedup_token=f"migration:{version}:{checksum}")
        done.append(path.name)
    set_retention(history, retention_days, progress)
    return done


def set_retention(history: History, days: int, progress: Callable[[str], None]) -> None:
    """Make usage_events keep `days` of events (TOKENFUSE_HISTORY_RETENTION_DAYS). Changing a TTL
    rewrites existing parts, so it is altered only when it differs."""
    ttl = f"toIntervalDay({int(days)})"
    engine, = history.select("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                            "AND name = 'usage_events'").rows[0]
    if engine.startswith("Distributed"):
        return  # the cluster variant: retention is set on usage_events_local (cluster/README.md)
    if ttl not in engine:
        progress(f"setting usage_events retention to {days} days")
        history.command(f"ALTER TABLE usage_events MODIFY TTL toDateTime(event_time) + {ttl}")
