"""Read-only SQL for users while the sink owns the embedded engine.

The sink serves `POST /sql` on 127.0.0.1 (JSON {"query", "parameters"} → {"columns", "rows"})
and its Prometheus metrics on `GET /metrics`;
`run_sql()` asks it, and opens ClickHouse itself when no sink answers. Either way ClickHouse
runs the query with readonly=1, so it refuses anything but reads."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from tokenfuse.config import Settings
from tokenfuse.errors import TokenfuseError
from tokenfuse.history.client import History, QueryError
from tokenfuse.observability.metrics import render_sink


def _execute(history: History, query: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    result = history.select(query, parameters, readonly=True)
    return {"columns": result.columns, "rows": [list(r) for r in result.rows]}


def serve(history: History, settings: Settings, stats: dict[str, int],
          gauges: dict[str, float] | None = None) -> ThreadingHTTPServer:
    """Start the loopback SQL endpoint in a thread; return the server (shutdown() to stop).
    `stats` (counters) and `gauges` are the sink's, exposed on /metrics."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                self._reply(200, {"ok": True, "stats": stats})
            elif self.path == "/metrics":
                self._send(200, *render_sink(stats, gauges or {}))
            else:
                self._reply(404, {"error": "POST /sql, GET /health or GET /metrics"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/sql":
                return self._reply(404, {"error": "POST /sql"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self._reply(200, _execute(history, body["query"], body.get("parameters")))
            except QueryError as exc:
                self._reply(400, {"error": str(exc)})
            except (ValueError, KeyError, TypeError):
                self._reply(400, {"error": 'expected JSON {"query": "...", "parameters": {...}}'})

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

    try:
        server = ThreadingHTTPServer((settings.sink_host, settings.sink_port), Handler)
    except OSError as exc:
        raise TokenfuseError(f"cannot serve SQL on {settings.sink_host}:{settings.sink_port} ({exc.strerror}); "
                             "set TOKENFUSE_SINK_PORT to a free port") from None
    threading.Thread(target=server.serve_forever, name="sql-endpoint", daemon=True).start()
    return server


def _remote(settings: Settings, query: str, parameters: dict[str, Any] | None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{settings.sink_host}:{settings.sink_port}/sql", method="POST",
        data=json.dumps({"query": query, "parameters": parameters}, default=str).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
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
def sql_runner(settings: Settings) -> Iterator[Callable[[str, dict[str, Any] | None], dict[str, Any]]]:
    """A function running read-only queries: through the running sink, or on a History opened
    here when no sink answers (embedded mode allows one process per data folder). A ClickHouse
    server is always asked directly."""
    if settings.clickhouse_url is None and _sink_answers(settings):
        yield lambda query, parameters=None: _remote(settings, query, parameters)
        return
    history = History(settings)
    try:
        # Through JSON like the sink's answers, so callers see the same value types either way.
        yield lambda query, parameters=None: json.loads(json.dumps(_execute(history, query, parameters),
                                                                   default=str))
    finally:
        history.close()


def run_sql(settings: Settings, query: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one read-only query via the running sink, or directly when none answers."""
    with sql_runner(settings) as run:
        return run(query, parameters)
