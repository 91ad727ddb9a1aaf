"""The sink's loopback SQL endpoint against hostile callers: a web page reaching it through DNS
rebinding (foreign Host header), another local user (no token), and queries that would run for
ever or return millions of rows. Served in this process on the real embedded ClickHouse."""

from __future__ import annotations

import http.client
import json
import os
import stat
import time

import pytest

from tests.helpers import free_port
from tests.history_helpers import chdb_settings, history  # noqa: F401 - fixtures
from tokenfuse.config import Settings
from tokenfuse.config.token_file import TokenFileError
from tokenfuse.history.client import QueryError
from tokenfuse.history.sql import read_token, run_sql, serve, token_path


@pytest.fixture
def endpoint(history, tmp_path):  # noqa: F811 - a fixture
    settings = Settings(data_dir=tmp_path, sink_port=free_port(), sql_max_seconds=1, sql_max_rows=1000)
    server = serve(history, settings, {"usage": 7})
    yield settings
    server.shutdown()
    server.server_close()


def request(settings: Settings, method: str, path: str, *, host: str | None = None, token: str | None = None,
            body: bytes | None = None, declared_length: int | None = None) -> tuple[int, dict]:
    """One request; with `declared_length`, the headers announce that many body bytes and none are
    sent (the answer must come from the headers alone)."""
    conn = http.client.HTTPConnection("127.0.0.1", settings.sink_port, timeout=30)
    headers = {"Host": f"127.0.0.1:{settings.sink_port}" if host is None else host}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn.putrequest(method, path, skip_host=True)
    length = len(body or b"") if declared_length is None else declared_length
    for name, value in {**headers, "Content-Length": str(length)}.items():
        conn.putheader(name, value)
    conn.endheaders(body)
    response = conn.getresponse()
    status, payload = response.status, json.loads(response.read())
    conn.close()
    return status, payload


QUERY = json.dumps({"query": "SELECT 1 AS one"}).encode()


def test_the_token_file_is_the_owners_alone(endpoint):
    info = token_path(endpoint).stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.getuid()
    assert len(read_token(endpoint)) >= 40


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:6067", "127.0.0.1.evil.example.com",
                                  "localhost.evil.example.com", "", "10.0.0.5"])
def test_a_foreign_host_header_is_refused_even_with_the_token(endpoint, host):
    status, payload = request(endpoint, "POST", "/sql", host=host, token=read_token(endpoint), body=QUERY)
    assert status == 403 and "DNS rebinding" in payload["error"]
    assert request(endpoint, "GET", "/health", host=host)[0] == 403


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}"])
def test_loopback_host_headers_with_the_token_are_answered(endpoint, host):
    status, payload = request(endpoint, "POST", "/sql", host=host.format(port=endpoint.sink_port),
                              token=read_token(endpoint), body=QUERY)
    assert (status, payload) == (200, {"columns": ["one"], "rows": [[1]]})


@pytest.mark.parametrize("token", [None, "", "guess", "x" * 43])
def test_queries_without_the_right_token_are_refused(endpoint, token):
    status, payload = request(endpoint, "POST", "/sql", token=token, body=QUERY)
    assert status == 401 and str(token_path(endpoint)) in payload["error"]
    # Counters need no token (probes, Prometheus); the Host check still applies to them.
    assert request(endpoint, "GET", "/health") == (200, {"ok": True, "stats": {"usage": 7}})
    assert request(endpoint, "GET", "/metrics", host="evil.example.com")[0] == 403


def test_run_sql_reads_the_token_and_goes_through_the_sink(endpoint):
    assert run_sql(endpoint, "SELECT {n:UInt8} AS n", {"n": 5}) == {"columns": ["n"], "rows": [[5]]}


def test_a_token_file_others_can_read_is_not_used(endpoint):
    token_path(endpoint).chmod(0o644)
    with pytest.raises(TokenFileError, match="readable by you only"):
        run_sql(endpoint, "SELECT 1")


def test_a_long_result_is_refused_with_the_setting_to_raise(endpoint):
    with pytest.raises(QueryError, match="TOKENFUSE_SQL_MAX_ROWS"):
        run_sql(endpoint, "SELECT number FROM system.numbers LIMIT 1000000")
    assert len(run_sql(endpoint, "SELECT number FROM numbers(1000)")["rows"]) == 1000


def test_a_slow_query_is_stopped_after_the_time_limit(endpoint):
    started = time.monotonic()
    with pytest.raises(QueryError, match="TOKENFUSE_SQL_MAX_SECONDS"):
        run_sql(endpoint, "SELECT count() FROM numbers(1000000000000)")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("query", ["SELECT number FROM numbers(5000) SETTINGS max_result_rows = 0",
                                   "SELECT 1 SETTINGS max_execution_time = 0, readonly = 0"])
def test_a_query_cannot_lift_its_limits(endpoint, query):
    with pytest.raises(QueryError, match="readonly"):
        run_sql(endpoint, query)


def test_an_oversized_request_is_refused_unread(endpoint):
    # The 2 MB body is announced and never sent: a server that waited to read it would time out.
    status, payload = request(endpoint, "POST", "/sql", token=read_token(endpoint), declared_length=2 << 20)
    assert status == 413 and "at most" in payload["error"]
