"""Every Kafka topic tokenfuse uses, declared once with its config, and created idempotently.

Faust does not create source topics; a topic auto-created with another partition count makes the
worker die with PartitionsMismatch. So `tokenfuse topics create` (and the worker at start-up)
create them here first, with the partition counts Faust's tables expect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from tokenfuse.config import Settings
from tokenfuse.errors import BrokerUnavailable, TokenfuseError

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """Logical name -> spec. Keys: usage, budgets, control, alerts, dlq, notify-dlq, deltas, acks, autopilot,
    worker-status, lease-requests, leases."""
    p = settings.partitions
    compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "60000"}
    specs = [
        TopicSpec("usage", p, {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)},
                  "UsageEvent from agent runtimes, key = agent id"),
        # One partition: every worker reads all budgets (GlobalTable), order per id is all that matters.
        TopicSpec("budgets", 1, compact, "Budget by id, null = delete"),
        # As many partitions as deltas, keyed by scope: a scope's control states are written by
        # the worker owning that scope, in the transaction of its input (worker/faust_adapter/transactions.py).
        TopicSpec("control", p, compact, "ControlState by scope key: the kill switch"),
        TopicSpec("alerts", p, {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)},
                  "Alert by scope key"),
        # One partition, like budgets: every worker follows all acks (operators' feedback).
        TopicSpec("acks", 1, compact, "AlertAck by budget|kind|scope: a detector quiet for a scope until a time"),
        # One partition, like budgets: the autopilot's proposals, changes and operators' approvals,
        # the latest status per decision id (the sink keeps every version in ClickHouse).
        TopicSpec("autopilot", 1, compact, "AutopilotDecision by decision id"),
        TopicSpec("dlq", p, {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)},
                  "rejected usage bytes, reason in headers"),
        # One partition: the notifier's give-ups are few and read by people, in order.
        TopicSpec("notify-dlq", 1, {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)},
                  "notifications the notifier gave up on (JSON, key = channel, reason in headers)"),
        # One partition: a record per deltas partition, every runtime reads them all (docs/leases.md).
        TopicSpec("worker-status", 1, compact, "WorkerStatus by deltas:<partition>: the worker's lag"),
        # Runtimes ask for leases on shared scopes; every worker reads all and answers for the
        # scopes it owns. Requests are only worth seconds: a short retention.
        TopicSpec("lease-requests", 1, {"cleanup.policy": "delete", "retention.ms": str(3600 * 1000)},
                  "LeaseRequest by budget|scope|holder"),
        # Grants: compacted (the worker restores what it granted after a restart) and deleted after
        # a day (a holder's lease lives seconds; a restarted worker needs only recent ones).
        TopicSpec("leases", 1, {**compact, "cleanup.policy": "compact,delete", "retention.ms": str(24 * 3600 * 1000)},
                  "Lease by budget|scope|holder and budget|scope (the window's total)"),
        # Internal: per-scope deltas repartitioned by scope key, so every scope's totals live in
        # exactly one partition (and one changelog partition) whichever agents feed it.
        TopicSpec("deltas", p, {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)},
                  "internal: per-scope usage deltas, key = scope key"),
    ]
    return {s.name: TopicSpec(settings.topic(s.name), s.partitions, s.config, s.doc) for s in specs}


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_config)


def ensure_broker(settings: Settings, timeout: float = 5.0) -> None:
    """Raise BrokerUnavailable with a clear message if no broker answers within `timeout`: why
    the connection failed when librdkafka says (login refused, certificate not trusted, ...)."""
    # A quiet probe: librdkafka would log every failed connect attempt.
    errors: list[KafkaError] = []
    probe = AdminClient({**settings.kafka_config, "log_level": 0, "error_cb": errors.append})
    try:
        probe.list_topics(timeout=timeout)
    except KafkaException:
        probe.poll(0)  # serves error_cb
        why = next((e.str() for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN), "")
        raise BrokerUnavailable(
            f"no Kafka broker answers at {settings.bootstrap_servers} over {settings.security_protocol}"
            + (f" ({why})" if why else "")
            + ": start one with `deploy/kafka/kafka.sh start` or set TOKENFUSE_BOOTSTRAP_SERVERS and the "
            "security settings (docs/security.md)"
        ) from None


def create_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are,
    but a partition count that differs from the spec is an error (Faust would die on it)."""
    ensure_broker(settings)
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout).topics
    wanted = topic_specs(settings).values()
    mismatched = [
        f"{s.name} has {len(existing[s.name].partitions)} partitions, expected {s.partitions}"
        for s in wanted
        if s.name in existing and len(existing[s.name].partitions) != s.partitions
    ]
    if mismatched:
        raise BrokerUnavailable("topics exist with the wrong partition count: " + "; ".join(mismatched))
    new = [NewTopic(s.name, s.partitions, 1, config=s.config) for s in wanted if s.name not in existing]
    created, failed = [], []
    for name, fut in (admin.create_topics(new, request_timeout=timeout).items() if new else []):
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                failed.append(f"{name}: {exc.args[0].str()}")
    if failed:
        raise TokenfuseError(
            f"creating topics at {settings.bootstrap_servers} failed: " + "; ".join(failed)
            + " (on a cluster with ACLs, an admin creates them: `tokenfuse topics create`, docs/security.md)")
    _wait_for_leaders(admin, created, timeout)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """A created topic is usable once each partition has a leader; until then reads fail with
    NOT_LEADER_FOR_PARTITION."""
    deadline = time.monotonic() + timeout
    while names:
        topics = admin.list_topics(timeout=timeout).topics
        if all(n in topics and topics[n].partitions and all(p.leader >= 0 for p in topics[n].partitions.values())
               for n in names):
            return
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"topics have no leader after {timeout:.0f}s: {', '.join(names)}")
        time.sleep(0.05)


def delete_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Delete every topic with the settings' prefix, Faust's internal ones included (tests, demo)."""
    admin = admin_client(settings)
    names = [t for t in admin.list_topics(timeout=timeout).topics
             if t.startswith(settings.topic_prefix + ".") or t.startswith(settings.app_id + "-")]
    for fut in (admin.delete_topics(names, operation_timeout=timeout).values() if names else []):
        fut.result()
