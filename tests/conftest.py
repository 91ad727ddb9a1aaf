"""Fixtures shared by every test.

Integration tests (marked `integration`, everything under tests/integration/) need the real local
broker: locally they skip when it is down; under CI (CI=true) they fail, so a missing broker can
never pass as green.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.brokers import Cluster, LocalBroker
from tests.helpers import unique_settings
from tokenfuse.config import Settings
from tokenfuse.errors import BrokerUnavailable
from tokenfuse.kafka.topics import create_topics, delete_topics, ensure_broker

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
    """unique_settings on the shared broker. Topics are created before and deleted after the test."""
    s = unique_settings(broker, tmp_path)
    create_topics(s)
    yield s
    if not os.environ.get("TOKENFUSE_TEST_KEEP_TOPICS"):  # keep them to inspect a failure
        delete_topics(s)


@pytest.fixture
def private_broker(tmp_path_factory) -> LocalBroker:
    """A broker of the test's own on a free port, for tests that stop and start it."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def secured_broker(tmp_path_factory) -> LocalBroker:
    """One secured broker (TLS, SCRAM user per role, StandardAuthorizer) for the whole session."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-secure"), secure=True)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def secured_cluster(secured_broker: LocalBroker, tmp_path: Path) -> Cluster:
    """This test's topics on the secured broker, with the role ACLs for its prefix and app id;
    `cluster.role("runtime")` etc. are the settings each role connects with."""
    admin = secured_broker.role_settings("admin", unique_settings(secured_broker.bootstrap, tmp_path))
    cluster = Cluster(admin, secured_broker).create()
    yield cluster
    cluster.delete()
