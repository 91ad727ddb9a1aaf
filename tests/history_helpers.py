"""Fixtures for tests of the ClickHouse history in this pytest process.

chDB runs one engine per process on one data folder, so every in-process test shares one
session-scoped folder and gets a database of its own (uuid-named)."""

from __future__ import annotations

import uuid

import pytest

from tokenfuse.config import Settings
from tokenfuse.history.client import History
from tokenfuse.history.migrate import migrate


@pytest.fixture(scope="session")
def chdb_settings(tmp_path_factory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("chdb"))


@pytest.fixture
def history(chdb_settings: Settings):
    """A migrated, empty tokenfuse database of this test's own."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    h = History(chdb_settings, database)
    migrate(h)
    yield h
    h.command(f"DROP DATABASE IF EXISTS `{database}`")
    h.close()


def runner(history: History):
    """A report runner on `history`, the way reports run in-process."""
    return lambda query, parameters=None: {"columns": (r := history.select(query, parameters)).columns,
                                           "rows": [list(row) for row in r.rows]}
