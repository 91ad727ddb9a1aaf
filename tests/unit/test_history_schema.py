"""Migrations (single node and cluster variant) on the embedded ClickHouse engine."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.history_helpers import chdb_settings, history  # noqa: F401 - fixtures
from tokenfuse.errors import ConfigError, TokenfuseError
from tokenfuse.history.client import History, quote_identifier
from tokenfuse.history.migrate import migrate, migration_files, statements
from tokenfuse.resources import resource_path

TABLES = {"usage_events", "alerts", "control_changes", "budgets_history",
          "usage_by_minute", "usage_by_hour", "usage_by_day", "alert_acks", "agents_by_hour",
          "autopilot_decisions", "runs_by_day"}


def tables(h: History) -> dict[str, str]:
    return dict(h.select("SELECT name, engine FROM system.tables WHERE database = currentDatabase()").rows)


def test_migrate_creates_every_table_once_and_records_it(history):
    found = tables(history)
    assert TABLES <= set(found)
    assert found["usage_events"] == "MergeTree"
    assert found["usage_by_hour"] == "SummingMergeTree"
    assert found["usage_by_hour_mv"] == "MaterializedView"
    assert migrate(history) == []  # idempotent
    versions = [r[0] for r in history.select("SELECT version FROM schema_migrations ORDER BY version").rows]
    assert versions == [int(p.name[:3]) for p in migration_files()]
    partition_key, sorting_key = history.select(
        "SELECT partition_key, sorting_key FROM system.tables WHERE database = currentDatabase() "
        "AND name = 'usage_events'").rows[0]
    assert partition_key == "toYYYYMM(event_time)"
    assert sorting_key.startswith("org, team, agent, event_time")


def test_retention_follows_the_setting(history):
    def engine():
        return history.select("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                              "AND name = 'usage_events'").rows[0][0]

    assert "toIntervalDay(400)" in engine()
    messages = []
    migrate(history, 30, progress=messages.append)
    assert "toIntervalDay(30)" in engine() and messages == ["setting usage_events retention to 30 days"]
    messages.clear()
    migrate(history, 30, progress=messages.append)
    assert messages == []


def test_a_changed_applied_migration_is_refused(history, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(resource_path("clickhouse"), folder, ignore=shutil.ignore_patterns("cluster"))
    first = sorted(folder.glob("001_*.sql"))[0]
    first.write_text(first.read_text().replace("-- Every usage event", "-- Each usage event"))
    with pytest.raises(ConfigError, match="changed after it was applied"):
        migrate(history, folder=folder)


@pytest.mark.parametrize("name", ["tokenfuse; DROP TABLE x", "a`b", "1abc", "", "x" * 200])
def test_database_names_are_identifiers_only(name, chdb_settings):
    with pytest.raises(TokenfuseError, match="not a valid ClickHouse database name"):
        quote_identifier(name)
    with pytest.raises(TokenfuseError):
        History(chdb_settings, name)


def test_cluster_variant_parses_and_mirrors_every_table(history):
    folder = resource_path("clickhouse") / "cluster"
    created = set()
    for path in sorted(folder.glob("*.sql")):
        for statement in statements(path.read_text()):
            # ClickHouse's own parser; raises on a syntax error.
            formatted = history.select("SELECT formatQuery({q:String})", {"q": statement}).rows[0][0]
            assert "ON CLUSTER" in formatted, statement[:80]
            created.update(re.findall(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", formatted))
    for table in TABLES:
        assert {table, f"{table}_local"} <= created
    assert {"usage_by_minute_mv", "usage_by_hour_mv", "usage_by_day_mv", "agents_by_hour_mv"} <= created


def test_cluster_local_tables_have_the_single_node_columns(history):
    cluster_sql = "\n".join(p.read_text() for p in (resource_path("clickhouse") / "cluster").glob("*.sql"))
    for table in TABLES:
        columns = [r[0] for r in history.select(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
            "ORDER BY position", {"t": table}).rows]
        block = re.search(rf"CREATE TABLE IF NOT EXISTS {table}_local .*?\n\((.*?)\n\)", cluster_sql, re.S).group(1)
        declared = [line.split()[0] for line in block.splitlines()
                    if line.strip() and not line.strip().startswith(("--", "INDEX"))]
        for alter in re.findall(rf"ALTER TABLE {table}_local .*?;", cluster_sql, re.S):  # later migrations
            declared += re.findall(r"ADD COLUMN IF NOT EXISTS (\w+)", alter)
        assert declared == columns, table
