"""Fixtures shared by every test.

Integration tests (marked `integration`, everything under tests/integration/) need the real local
broker: locally they skip when it is down; under CI (CI=true) they fail, so a missing broker can
never pass as green.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers import free_port
from tokenfuse.config import Settings
from tokenfuse.errors import BrokerUnavailable
from tokenfuse.kafka.topics import create_topics, delete_topics, ensure_broker

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("TOKENFUSE_TEST_BOOTSTRAP", "127.0.0.1:9092")


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> str:
    """The bootstrap address of the running local broker."""
    try:
        ensure_broker(Settings(bootstrap_servers=BOOTSTRAP), timeout=10)
    except BrokerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires the local broker: {exc}")
        pytest.skip(f"{exc}")
    return BOOTSTRAP


@pytest.fixture
def settings(broker: str, tmp_path: Path) -> Settings:
    """Settings with uuid-named topics and consumer group, so tests never share state.
    Topics are created before and deleted after the test."""
    tag = uuid.uuid4().hex[:10]
    s = Settings(
        bootstrap_servers=broker,
        topic_prefix=f"test-{tag}",
        app_id=f"test-{tag}-worker",
        partitions=2,
        data_dir=tmp_path / "data",
        control_key="test-control-key-" + tag,
        web_port=0,
        sink_port=free_port(),
    )
    create_topics(s)
    yield s
    if not os.environ.get("TOKENFUSE_TEST_KEEP_TOPICS"):  # keep them to inspect a failure
        delete_topics(s)


@pytest.fixture
def private_broker(tmp_path_factory) -> str:
    """A broker of the test's own on a free port, for tests that stop and start it.
    Shares the jars of the main broker's home when present. Yields its bootstrap address."""
    port = free_port(pair=True)
    home = tmp_path_factory.mktemp("kafka")
    env = {**os.environ, "TOKENFUSE_KAFKA_HOME": str(home), "TOKENFUSE_KAFKA_PORT": str(port)}
    shared_libs = REPO / ".tokenfuse" / "kafka" / "libs"
    if (shared_libs / ".complete").exists():
        env["TOKENFUSE_KAFKA_LIBS"] = str(shared_libs)
    script = REPO / "deploy" / "kafka" / "kafka.sh"

    def run(cmd: str) -> None:
        subprocess.run([str(script), cmd], env=env, check=True, capture_output=True, timeout=120)

    run("start")
    broker = type("PrivateBroker", (), {"bootstrap": f"127.0.0.1:{port}", "start": lambda self: run("start"),
                                         "stop": lambda self: run("stop")})()
    yield broker
    run("stop")
