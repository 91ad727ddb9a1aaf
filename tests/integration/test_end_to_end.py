"""Issue 2's end-to-end test: SDK → real broker → worker → kill switch, and → sink → embedded
ClickHouse, with a malformed message on the way. It runs on the shared plaintext broker and on a
secured one, where each role connects with its own SCRAM user over SASL_SSL, or with its own TLS
client certificate, and has only its ACLs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

from tests.brokers import Cluster
from tests.helpers import UsageProducer, publish_budget, read_all
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.dev.process import RoleProcess
from tokenfuse.sdk.fuse import Fuse
from tokenfuse.sdk.options import FuseOptions


def sql(settings, query):
    result = subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", "sql", "--format", "json", query],
                            env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# TLS on every hop (runtime → worker's two stages and transactions → runtime) costs CPU: on the
# shared 2-core dev machine 16 secured runs blocked in 0.4-1.0 s typically (plaintext 0.3-0.55 s),
# but in 1.96 s and 2.85 s at load averages of 15-20, so they get a second more than plaintext.
TLS_BLOCK_S = 3.0


@pytest.fixture(params=["plaintext", "sasl_ssl", "ssl_client_certificates"])
def cluster(request) -> Cluster:
    if request.param == "plaintext":
        return Cluster(request.getfixturevalue("settings"))
    secured = request.getfixturevalue("secured_cluster")
    return secured if request.param == "sasl_ssl" else dataclasses.replace(secured, via="mtls")


@pytest.fixture
def pipeline(cluster, tmp_path):
    with RoleProcess("sink", cluster.role("sink"), tmp_path / "sink.log"), \
            RoleProcess("worker", cluster.role("worker"), tmp_path / "worker.log"):
        yield


def blocked(fuse: Fuse) -> bool:
    try:
        fuse.check()
        return False
    except BudgetExceeded:
        return True


def test_runaway_blocked_in_its_runtime_and_history_holds_every_event_once(cluster, pipeline, tmp_path):
    settings, runtime = cluster.settings, cluster.role("runtime")
    publish_budget(cluster.role("operator"), id="per-agent", scope="agent:*", metric="total_tokens", window="1h",
                   limit=5000)
    fuses = {name: Fuse(runtime, FuseOptions(org="acme", team="search", agent=name, spool_dir=tmp_path / name))
             for name in ("alpha", "beta", "runaway")}
    try:
        for fuse in fuses.values():
            assert fuse.kill_switch.wait_ready(30)
        calls = {name: 0 for name in fuses}
        for _ in range(4):
            for name, fuse in fuses.items():
                fuse.record("gpt-4o-mini", input_tokens=1000 if name == "runaway" else 300, output_tokens=100)
                calls[name] += 1
        bad = UsageProducer(runtime)
        bad.send_raw(b"mallory", b"\x00garbage that is not a usage event")
        bad.flush()
        fuses["runaway"].record("gpt-4o-mini", input_tokens=1000, output_tokens=100)  # 5500: crosses 5000
        calls["runaway"] += 1
        for fuse in fuses.values():
            assert fuse.flush(10)
        crossed_at = time.monotonic()
        assert wait_until(lambda: blocked(fuses["runaway"]), timeout=10)
        assert time.monotonic() - crossed_at < (2.0 if cluster.broker is None else TLS_BLOCK_S)
        assert not blocked(fuses["alpha"]) and not blocked(fuses["beta"])

        expected = sum(calls.values())
        history = cluster.role("sink")
        assert wait_until(lambda: sql(history, "SELECT count() AS n FROM usage_events")[0]["n"] >= expected, 30)
        rows = sql(history, "SELECT agent, count() AS n, uniqExact(event_id) AS ids, "
                             "sum(input_tokens) AS input FROM usage_events GROUP BY agent ORDER BY agent")
        assert [(r["agent"], int(r["n"]), int(r["ids"])) for r in rows] == [
            ("alpha", 4, 4), ("beta", 4, 4), ("runaway", 5, 5)]
        assert {r["agent"]: int(r["input"]) for r in rows} == {"alpha": 1200, "beta": 1200, "runaway": 5000}
        # The malformed message is in the DLQ with its reason, and the worker went on (above).
        dlq = read_all(settings, "dlq", bytes, until=lambda r: len(r) >= 1, timeout=10)
        assert [(k, v) for k, v, _ in dlq] == [(b"mallory", b"\x00garbage that is not a usage event")]
        assert "no Avro single-object header" in dict(dlq[0][2])["reason"].decode()
    finally:
        for fuse in fuses.values():
            fuse.close()
