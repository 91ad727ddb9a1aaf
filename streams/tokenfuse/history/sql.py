"""Read-only SQL for users while the sink owns the embedded engine.

The sink serves `POST /sql` on 127.0.0.1 (JSON {"query", "parameters"} → {"columns", "rows"})
and its Prometheus metrics on `GET /metrics`;
`run_sql()` asks it, and opens ClickHouse itself when no sink answers. Either way ClickHouse
runs the query with readonly=1, so it refuses anything but reads, and with the limits of
TOKENFUSE_SQL_MAX_SECONDS / TOKENFUSE_SQL_MAX_ROWS, which readonly=1 forbids a query to lift.

A loopback port is reachable by every local user and, through DNS rebinding, by web pages in a
local browser. So the endpoint answers only requests whose Host header names the loopback
(127.0.0.1, localhost, [::1], with any port), and queries only when they carry the token the
sink writes at start to `<data_dir>/sink.token`, readable by its owner only (0600;
config/token_file.py, as the worker's pages). /health and
/metrics (counters) need no token."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

from tokenfuse.config import Settings, token_file
from tokenfuse.errors import TokenfuseError
from tokenfuse.history.client import History, HistoryUnavailable, QueryError
from tokenfuse.observability.metrics import render_sink

TOKEN_FILE = "sink.token"
MAX_REQUEST_BYTES = 1 << 20  # a query and its parameters; anything larger is not a query
_LOOPBACK_HOST = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$", re.I)
_HINTS = {"TIMEOUT_EXCEEDED": "TOKENFUSE_SQL_MAX_SECONDS", "TOO_MANY_ROWS": "TOKENFUSE_SQL_MAX_ROWS"}


def limits(settings: Settings) -> dict[str, Any]:
    """The ClickHouse settings that bound every user query."""
    return {"max_execution_time": settings.sql_max_seconds, "max_result_rows": settings.sql_max_rows,
            "result_overflow_mode": "throw"}


def _execute(history: History, settings: Settings, query: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    try:
        result = history.select(query, parameters, readonly=True, limits=limits(settings))
    except QueryError as exc:
        hint = next((f" (limit set by {name})" for code, name in _HINTS.items() if code in str(exc)), "")
        raise QueryError(f"{exc}{hint}") from None
    return {"columns": result.columns, "rows": [list(r) for r in result.rows]}


def token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def read_token(settings: Settings) -> str:
    """The running sink's token (config/token_file.py checks the file is the owner's alone)."""
    return token_file.read_token(token_path(settings), "sink")


class _Handler(BaseHTTPRequestHandler):
    """One request. The server object carries the history, settings, token, stats and gauges."""

    server: "_SqlServer"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        # Counters only, for probes and Prometheus: no token needed (the Host check applies).
        if not self._allowed(token_needed=False):
            return
        if self.path == "/health":
            self._reply(200, {"ok": True, "stats": self.server.stats})
        elif self.path == "/metrics":
            self._send(200, *render_sink(self.server.stats, self.server.gauges))
        else:
            self._reply(404, {"error": "POST /sql, GET /health or GET /metrics"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed(token_needed=True):
            return
        if self.path != "/sql":
            return self._reply(404, {"error": "POST /sql"})
        try:
            length = int(self.headers.get("Content-Length", 0))
            if length > MAX_REQUEST_BYTES:
                return self._reply(413, {"error": f"request of {length} bytes; at most {MAX_REQUEST_BYTES}"})
            body = json.loads(self.rfile.read(length))
            self._reply(200, _execute(self.server.history, self.server.settings, body["query"], body.get("parameters")))
        except QueryError as exc:
            self._reply(400, {"error": str(exc)})
        except (ValueError, KeyError, TypeError):
            self._reply(400, {"error": 'expected JSON {"query": "...", "parameters": {...}}'})

    def _allowed(self, token_needed: bool) -> bool:
        host = self.headers.get("Host", "")
        if not _LOOPBACK_HOST.match(host):
            self._reply(403, {"error": f"Host {host[:100]!r} refused: this endpoint answers 127.0.0.1 and "
                                       "localhost only (DNS rebinding protection)"})
            return False
        if token_needed and not token_file.bearer_matches(self.headers.get("Authorization"), self.server.token):
            self._reply(401, {"error": token_file.refusal(token_path(self.server.settings))})
            return False
        return True

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload, default=str).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:  # queries may carry user data: do not log them
        pass


class _SqlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, history: History, settings: Settings, stats: dict[str, int], gauges: dict[str, float],
                 token: str):
        self.history, self.settings, self.stats, self.gauges, self.token = history, settings, stats, gauges, token
        super().__init__((settings.sink_host, settings.sink_port), _Handler)


def serve(history: History, settings: Settings, stats: dict[str, int],
          gauges: dict[str, float] | None = None) -> ThreadingHTTPServer:
    """Start the loopback SQL endpoint in a thread; return the server (shutdown() to stop).
    `stats` (counters) and `gauges` are the sink's, exposed on /metrics."""
    try:
        server = _SqlServer(history, settings, stats, gauges or {}, token_file.write_token(token_path(settings)))
    except OSError as exc:
        raise TokenfuseError(f"cannot serve SQL on {settings.sink_host}:{settings.sink_port} ({exc.strerror}); "
                             "set TOKENFUSE_SINK_PORT to a free port") from None
    threading.Thread(target=server.serve_forever, name="sql-endpoint", daemon=True).start()
    return server


def _remote(settings: Settings, query: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{settings.sink_host}:{settings.sink_port}/sql", method="POST",
        data=json.dumps({"query": query, "parameters": parameters}, default=str).encode(),
        headers={"Content-Type": "application/json", **token_file.bearer(read_token(settings))})
    try:
        with urllib.request.urlopen(request, timeout=settings.sql_max_seconds + 30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise QueryError(json.loads(exc.read()).get("error", str(exc))) from None


def _sink_answers(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"http://{settings.sink_host}:{settings.sink_port}/health", timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def sql_runner(settings: Settings, *, open_embedded: bool = True
               ) -> Iterator[Callable[[str, dict[str, Any] | None], dict[str, Any]]]:
    """A function running read-only queries: through the running sink, or on a History opened
    here when no sink answers (embedded mode allows one process per data folder). A ClickHouse
    server is always asked directly. Long-running roles pass `open_embedded=False`: they must
    never hold the embedded engine the sink needs (HistoryUnavailable instead)."""
    if settings.clickhouse_url is None and _sink_answers(settings):
        yield lambda query, parameters=None: _remote(settings, query, parameters)
        return
    if settings.clickhouse_url is None and not open_embedded:
        raise HistoryUnavailable("the sink does not answer (embedded ClickHouse is the sink's)")
    history = History(settings)
    try:
        # Through JSON like the sink's answers, so callers see the same value types either way.
        yield lambda query, parameters=None: json.loads(json.dumps(_execute(history, settings, query, parameters),
                                                                   default=str))
    finally:
        history.close()


def run_sql(settings: Settings, query: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one read-only query via the running sink, or directly when none answers."""
    with sql_runner(settings) as run:
        return run(query, parameters)
