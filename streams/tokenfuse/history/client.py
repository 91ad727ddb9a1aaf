"""One ClickHouse client per process: embedded chDB by default, a server when configured.

chDB runs one engine per process and one process per data folder, and its calls block: the
process that owns it (the sink) serialises calls with a lock and runs them off any event loop.
Several databases may share one engine (tests give each test its own database).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from tokenfuse.config import Settings
from tokenfuse.errors import TokenfuseError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class HistoryUnavailable(TokenfuseError):
    """ClickHouse could not be opened or reached, or refused a statement."""


class QueryError(TokenfuseError):
    """ClickHouse rejected a query (syntax, unknown column, a write in read-only mode...)."""


def quote_identifier(name: str) -> str:
    """`name` as a quoted ClickHouse identifier. Only plain identifiers are accepted, so the
    quoting never has to escape anything and user text never becomes SQL."""
    if not _IDENTIFIER.match(name):
        raise TokenfuseError(f"{name!r} is not a valid ClickHouse database name (letters, digits, _)")
    return f"`{name}`"


@dataclass(frozen=True)
class Rows:
    """A query's answer: column names and rows of Python values."""

    columns: list[str]
    rows: list[tuple]


class History:
    """A locked ClickHouse client on tokenfuse's database."""

    def __init__(self, settings: Settings, database: str | None = None):
        self.database = settings.clickhouse_database if database is None else database
        quoted = quote_identifier(self.database)
        self.lock = threading.Lock()
        if settings.clickhouse_url is None:
            path = settings.data_dir / "clickhouse"
            path.mkdir(parents=True, exist_ok=True)
            connect: dict[str, Any] = {"interface": "chdb", "path": str(path)}
            self.where = f"embedded ClickHouse at {path}"
        else:
            connect = {"dsn": settings.clickhouse_url.get_secret_value(), "connect_timeout": 5}
            self.where = "the ClickHouse server"  # never the DSN: it may hold a password
        try:
            self.client = clickhouse_connect.get_client(**connect)
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {quoted}")
            self.client.database = self.database  # unqualified names in all SQL below mean ours
        except (ClickHouseError, OSError, RuntimeError) as exc:
            raise HistoryUnavailable(f"cannot open {self.where}: {first_line(exc)}") from None

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self.lock:
            try:
                return self.client.command(sql, parameters=parameters)
            except ClickHouseError as exc:
                raise HistoryUnavailable(f"{self.where}: {first_line(exc)}") from None

    def select(self, sql: str, parameters: dict[str, Any] | None = None, *, readonly: bool = True,
               limits: dict[str, Any] | None = None) -> Rows:
        """Run a query with server-side bound parameters (`{name:Type}` in the SQL). readonly=True
        makes ClickHouse itself refuse anything but reads (setting readonly=1), including a query
        that tries to lift the `limits` (ClickHouse settings such as max_execution_time)."""
        settings = {**(limits or {}), **({"readonly": 1} if readonly else {})}
        with self.lock:
            try:
                result = self.client.query(sql, parameters=parameters, settings=settings or None)
            except ClickHouseError as exc:
                raise QueryError(first_line(exc)) from None
        return Rows(list(result.column_names), list(result.result_rows))

    def insert(self, table: str, rows: list[list[Any]], columns: list[str], dedup_token: str) -> None:
        """Insert rows; a retry with the same `dedup_token` is dropped by ClickHouse if the first
        attempt landed (tables keep the tokens of their last inserts, see the migrations)."""
        with self.lock:
            try:
                self.client.insert(table, rows, column_names=columns,
                                   settings={"insert_deduplication_token": dedup_token,
                                             # a dropped retry must not reach the rollup views
                                             "deduplicate_blocks_in_dependent_materialized_views": 1,
                                             # cluster variant: the token must reach the replicas
                                             "insert_distributed_sync": 1})
            except ClickHouseError as exc:
                raise HistoryUnavailable(f"insert into {table} failed on {self.where}: {first_line(exc)}") from None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def first_line(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return (text or type(exc).__name__)[:300]
