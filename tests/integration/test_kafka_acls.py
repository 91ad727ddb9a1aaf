"""The ACL matrix of tokenfuse/kafka/acls.py, proven on the secured broker (SASL_SSL, one SCRAM
user per role, StandardAuthorizer): each role produces to and consumes from the topics with its
own credentials, and what it may not do fails with an authorization error. The ACLs are applied
with `tokenfuse topics acls --apply` as the admin, as an operator of a real cluster would."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from tests.brokers import Cluster
from tests.helpers import unique_settings
from tokenfuse.errors import BrokerUnavailable, TokenfuseError
from tokenfuse.kafka.acls import Grant, apply_acls, principals
from tokenfuse.kafka.topics import create_topics, ensure_broker

DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}

# (role, action, topic, allowed): what each role must and must not be able to do.
MATRIX = [
    ("runtime", "write", "usage", True),
    ("runtime", "read", "control", True),
    ("runtime", "write", "control", False),
    ("runtime", "write", "budgets", False),
    ("runtime", "read", "usage", False),
    ("runtime", "read", "budgets", False),
    ("worker", "read", "usage", True),
    ("worker", "write", "control", True),
    ("worker", "write", "alerts", True),
    ("worker", "write", "budgets", False),
    ("worker", "write", "usage", False),
    ("sink", "read", "usage", True),
    ("sink", "read", "control", True),
    ("sink", "write", "usage", False),
    ("sink", "write", "control", False),
    ("sink", "write", "budgets", False),
    ("operator", "write", "budgets", True),
    ("operator", "write", "control", True),
    ("operator", "write", "usage", False),
    ("operator", "write", "alerts", False),
    ("operator", "read", "usage", False),
    ("dashboard", "read", "alerts", True),
    ("dashboard", "read", "usage", True),
    ("dashboard", "write", "control", False),
    ("dashboard", "write", "budgets", False),
    ("autopilot", "read", "alerts", True),
    ("autopilot", "write", "budgets", True),
    ("autopilot", "write", "autopilot", True),
    ("autopilot", "write", "control", False),
    ("autopilot", "write", "alerts", False),
    ("autopilot", "read", "usage", False),
    ("operator", "write", "autopilot", True),
    ("sink", "write", "autopilot", False),
]


@pytest.fixture(scope="module")
def cluster(secured_broker, tmp_path_factory) -> Cluster:
    """Topics created and ACLs applied through the CLI as admin; one record in every topic."""
    admin = secured_broker.role_settings("admin", unique_settings(secured_broker.bootstrap,
                                                                  tmp_path_factory.mktemp("acls")))
    create_topics(admin)
    applied = subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", "topics", "acls", "--apply"],
                             env={**os.environ, **admin.to_env()}, capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    producer = Producer(admin.kafka_config)
    for topic in ("usage", "budgets", "control", "alerts", "dlq", "deltas"):
        producer.produce(admin.topic(topic), key=b"seed", value=b"seed")
    assert producer.flush(30) == 0
    cluster = Cluster(admin, secured_broker)
    yield cluster
    cluster.delete()


def write(settings, topic: str) -> KafkaError | None:
    """Produce one record (not idempotently: a role without any write right would fail on the
    producer id instead of the topic); the delivery error, None if it was written."""
    errors = []
    producer = Producer({**settings.kafka_config, "message.timeout.ms": 10_000, "enable.idempotence": False})
    producer.produce(settings.topic(topic), key=b"probe", value=b"probe", on_delivery=lambda e, _m: errors.append(e))
    producer.flush(15)
    assert errors, "no delivery report"
    return errors[0]


def read(settings, topic: str) -> KafkaError | None:
    """Fetch the first record of partition 0 (the seed); the error, None if it was read."""
    consumer = Consumer({**settings.kafka_config, "group.id": f"test-acl-probe-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topic(topic), p, OFFSET_BEGINNING) for p in (0, 1)
                     if topic != "budgets" or p == 0])
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() and msg.error().code() in DENIED:
                return msg.error()
            if not msg.error():
                return None
        raise AssertionError(f"neither a record nor an authorization error from {topic} within 15s")
    finally:
        consumer.close()


@pytest.mark.parametrize("role, action, topic, allowed", MATRIX,
                         ids=[f"{r}-{'may' if ok else 'may-not'}-{a}-{t}" for r, a, t, ok in MATRIX])
def test_each_role_may_do_what_the_acl_matrix_allows_and_nothing_else(cluster, role, action, topic, allowed):
    error = (write if action == "write" else read)(cluster.role(role), topic)
    if allowed:
        assert error is None, f"{role} could not {action} {topic}: {error}"
    else:
        assert error is not None and error.code() in DENIED, f"{role} could {action} {topic}: {error}"


# The same principals through TLS client certificates (CN=tokenfuse-<role>) get the same rights.
MTLS_MATRIX = [("runtime", "write", "usage", True), ("runtime", "write", "control", False),
               ("sink", "read", "usage", True), ("sink", "write", "budgets", False)]


@pytest.mark.parametrize("role, action, topic, allowed", MTLS_MATRIX,
                         ids=[f"{r}-{'may' if ok else 'may-not'}-{a}-{t}" for r, a, t, ok in MTLS_MATRIX])
def test_a_role_with_a_client_certificate_has_the_same_rights_as_with_its_password(
        cluster, role, action, topic, allowed):
    test_each_role_may_do_what_the_acl_matrix_allows_and_nothing_else(
        dataclasses.replace(cluster, via="mtls"), role, action, topic, allowed)


def test_a_wrong_password_or_a_plaintext_client_is_refused(cluster):
    runtime = cluster.role("runtime")
    wrong = runtime.model_copy(update={"sasl_password": runtime.sasl_password.__class__("not-the-password")})
    with pytest.raises(BrokerUnavailable):
        ensure_broker(wrong, timeout=2)
    with pytest.raises(BrokerUnavailable):
        ensure_broker(unique_settings(runtime.bootstrap_servers, runtime.data_dir), timeout=2)
    ensure_broker(runtime, timeout=10)  # the right credentials connect


@pytest.mark.parametrize("role", ["runtime", "worker", "operator"])
def test_no_role_can_grant_itself_more_rights(cluster, role):
    settings = cluster.role(role)
    runtime_writes_control = [Grant("runtime", "WRITE", "topic", settings.topic("control"))]
    with pytest.raises(TokenfuseError, match="CLUSTER_AUTHORIZATION_FAILED: these credentials may not"):
        apply_acls(settings, runtime_writes_control, principals())
    assert write(cluster.role("runtime"), "control").code() in DENIED
