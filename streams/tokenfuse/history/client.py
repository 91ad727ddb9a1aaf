"""One ClickHouse client per process: embedded chDB by default, a server when configured.

chDB runs one engine per process and one process per data folder, and its calls block: the
process that owns it (the sink) serialises calls with a lock and runs them off any event loop.
"""

from __future__ import annotations

import threading
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from tokenfuse.config import Settings
from tokenfuse.errors import TokenfuseError


class HistoryUnavailable(TokenfuseError):
    """ClickHouse could not be opened or reached."""


class History:
    """A locked ClickHouse client on tokenfuse's database."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.database = settings.clickhouse_database
        self.lock = threading.Lock()
        try:
            if settings.clickhouse_url is None:
                path = settings.data_dir / "clickhouse"
                path.mkdir(parents=True, exist_ok=True)
                connect = {"interface": "chdb", "path": str(path)}
                self.where = f"embedded ClickHouse at {path}"
            else:
                connect = {"dsn": settings.clickhouse_url.get_secret_value()}
                self.where = "the ClickHouse server"  # never the DSN: it may hold a password
            bootstrap = clickhouse_connect.get_client(**connect)
            # The name is validated by Settings (an identifier), so it is safe to quote here.
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            self.client = clickhouse_connect.get_client(**connect, database=self.database)
        except (ClickHouseError, OSError, RuntimeError) as exc:
            raise HistoryUnavailable(f"cannot open ClickHouse: {_first_line(exc)}") from None

    def command(self, sql: str) -> Any:
        with self.lock:
            return self.client.command(sql)

    def query(self, sql: str, parameters: dict[str, Any] | None = None, readonly: bool = False) -> Any:
        """Server-side bound parameters (`{name:Type}` in the SQL); readonly=True makes ClickHouse
        itself refuse anything but reads."""
        with self.lock:
            return self.client.query(sql, parameters=parameters, settings={"readonly": 1} if readonly else None)

    def insert(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        with self.lock:
            self.client.insert(table, rows, column_names=columns)

    def close(self) -> None:
        self.client.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
