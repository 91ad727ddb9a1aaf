"""`tokenfuse db migrate`: apply the ClickHouse migrations in deploy/clickhouse/ (idempotent)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="ClickHouse schema")
    p.add_argument("action", choices=["migrate"])
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.config import Settings
    from tokenfuse.history.client import History
    from tokenfuse.history.migrate import migrate

    settings = Settings.from_env()
    history = History(settings)
    try:
        applied = migrate(history, settings.history_retention_days, progress=lambda m: print(m, flush=True))
    finally:
        history.close()
    print(f"{len(applied)} migration(s) applied on {history.where}" if applied else "schema is up to date")
    return 0
