"""Least-privilege Kafka ACLs per process role, defined once: `tokenfuse topics acls` prints or
applies them, and `deploy/kafka/kafka.sh start --secure` applies them to the local broker.

Who may do what (the kill switch is only as safe as the right to write the control topic):
- runtime (agent SDK): write usage and lease requests, read control, worker status and leases.
- worker: read usage, budgets, deltas and control (manual states, versions: docs/control-plane.md);
  and lease requests and leases; write deltas, control, alerts, DLQ, worker status, leases; its own changelog
  topics (created by Faust), consumer group and transactional ids (all named `<app_id>...`).
- sink: read usage, alerts, control, budgets, autopilot with its group `<app_id>-sink`; writes nothing.
- operator: read and write budgets, control and autopilot (`budgets apply`, `kill`, `release`,
  `autopilot approve`).
- autopilot: read alerts, budgets and autopilot with its group `<app_id>-autopilot`; write budgets
  and autopilot in transactions (`<app_id>-autopilot`).
- dashboard: read usage, budgets, control, alerts, DLQ with groups `<app_id>-dashboard...`.
Every role may describe the tokenfuse topics (see which exist: `create_topics` checks them).
Creating the topics and these ACLs is the cluster admin's job (a super user).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError, TokenfuseError

ROLES = ("runtime", "worker", "sink", "operator", "dashboard", "autopilot")
# The local secured broker's SCRAM users are these names (deploy/kafka/kafka.sh).
USER_PREFIX = "tokenfuse-"


@dataclass(frozen=True)
class Grant:
    """ALLOW `operation` on a Kafka resource (`resource` = topic, group or transactional_id)."""

    role: str
    operation: str
    resource: str
    name: str
    prefixed: bool = False

    @property
    def pattern(self) -> str:
        return "prefixed" if self.prefixed else "literal"


def role_grants(settings: Settings) -> list[Grant]:
    """The ACL matrix for these settings' topic prefix and app id."""
    t, app = settings.topic, settings.app_id
    grants = [Grant(role, "DESCRIBE", "topic", settings.topic_prefix + ".", prefixed=True) for role in ROLES]

    def topics(role: str, operation: str, *names: str) -> None:
        grants.extend(Grant(role, operation, "topic", t(name)) for name in names)

    # Consumers that assign partitions still look up the coordinator of their group.id, which
    # needs DESCRIBE on it (not READ: they never join or commit): the kill switch's
    # (sdk/killswitch.py), the compacted-topic followers' (kafka/follow.py) and the worker's
    # recovery probe's (worker/faust_adapter/recovery.py).
    follow = "tokenfuse-follow-"
    grants.append(Grant("runtime", "DESCRIBE", "group", "tokenfuse-killswitch-", prefixed=True))
    grants.extend(Grant("worker", "DESCRIBE", "group", follow + t(name)) for name in ("budgets", "control", "leases"))
    grants.append(Grant("runtime", "DESCRIBE", "group", "tokenfuse-leases-", prefixed=True))
    grants.append(Grant("worker", "DESCRIBE", "group", "tokenfuse-lease-desk-", prefixed=True))
    grants.append(Grant("worker", "DESCRIBE", "group", "tokenfuse-recovery-probe"))
    grants.extend(Grant(role, "DESCRIBE", "group", f"{follow}{settings.topic_prefix}.", prefixed=True)
                  for role in ("operator", "dashboard", "autopilot"))
    topics("runtime", "WRITE", "usage", "lease-requests")
    topics("runtime", "READ", "control", "worker-status", "leases")
    topics("worker", "READ", "usage", "budgets", "deltas", "control", "lease-requests", "leases")
    topics("worker", "WRITE", "deltas", "control", "alerts", "dlq", "worker-status", "leases")
    grants.extend(Grant("worker", op, "topic", f"{app}-", prefixed=True)  # Faust's changelogs, leader topic
                  for op in ("CREATE", "READ", "WRITE"))
    grants.append(Grant("worker", "READ", "group", app))
    grants.extend(Grant("worker", op, "transactional_id", f"{app}-", prefixed=True) for op in ("WRITE", "DESCRIBE"))
    topics("sink", "READ", "usage", "alerts", "control", "budgets", "autopilot")
    grants.append(Grant("sink", "READ", "group", f"{app}-sink"))
    topics("operator", "READ", "budgets", "control", "autopilot")
    topics("operator", "WRITE", "budgets", "control", "autopilot")
    topics("dashboard", "READ", "usage", "budgets", "control", "alerts", "dlq")
    grants.append(Grant("dashboard", "READ", "group", f"{app}-dashboard", prefixed=True))
    topics("autopilot", "READ", "alerts", "budgets", "autopilot")
    topics("autopilot", "WRITE", "budgets", "autopilot")
    grants.append(Grant("autopilot", "READ", "group", f"{app}-autopilot"))
    grants.extend(Grant("autopilot", op, "transactional_id", f"{app}-autopilot") for op in ("WRITE", "DESCRIBE"))
    return sorted(grants, key=lambda g: ROLES.index(g.role))  # stable: each role's grants in order


def principals(overrides: list[str] | None = None) -> dict[str, str]:
    """Role -> Kafka principal: `User:tokenfuse-<role>` unless `ROLE=User:NAME` overrides it."""
    found = {role: f"User:{USER_PREFIX}{role}" for role in ROLES}
    problems = []
    for item in overrides or []:
        role, _, principal = item.partition("=")
        if role not in found or ":" not in principal:
            problems.append(f"--principal {item!r}: expected ROLE=User:NAME with ROLE one of {', '.join(ROLES)}")
        else:
            found[role] = principal
    if problems:
        raise ConfigError("invalid ACL principals:", problems)
    return found


_RESOURCE_TYPES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
                   "transactional_id": ResourceType.TRANSACTIONAL_ID}
_KAFKA_ACLS_FLAGS = {"topic": "--topic", "group": "--group", "transactional_id": "--transactional-id"}


def acl_binding(grant: Grant, principal: str) -> AclBinding:
    return AclBinding(_RESOURCE_TYPES[grant.resource], grant.name,
                      ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
                      principal, "*", AclOperation[grant.operation], AclPermissionType.ALLOW)


def table(grants: list[Grant], who: dict[str, str]) -> str:
    rows = [("role", "principal", "operation", "resource", "pattern", "name")]
    rows += [(g.role, who[g.role], g.operation, g.resource, g.pattern, g.name) for g in grants]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def kafka_acls_commands(grants: list[Grant], who: dict[str, str]) -> str:
    """The same bindings as `kafka-acls.sh` commands, for clusters managed with Kafka's tools."""
    lines = []
    for g in grants:
        pattern = " --resource-pattern-type prefixed" if g.prefixed else ""
        lines.append(f"kafka-acls.sh --bootstrap-server \"$BOOTSTRAP\" --command-config admin.properties --add "
                     f"--allow-principal {shlex.quote(who[g.role])} --operation {g.operation.title()} "
                     f"{_KAFKA_ACLS_FLAGS[g.resource]} {shlex.quote(g.name)}{pattern}")
    return "\n".join(lines)


def apply_acls(settings: Settings, grants: list[Grant], who: dict[str, str], timeout: float = 30.0) -> int:
    """Create the bindings (existing ones are left as they are); `settings` must carry admin
    credentials (a super user, or ALTER on the cluster). Returns how many bindings were sent."""
    bindings = [acl_binding(g, who[g.role]) for g in grants]
    failures: dict[str, list[str]] = {}  # reason -> the bindings it refused
    admin = AdminClient(settings.kafka_config)  # held until every future is done
    for binding, future in admin.create_acls(bindings, request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            failures.setdefault(_reason(exc.args[0]), []).append(
                f"{binding.principal} {binding.operation.name} {binding.name}")
    if failures:
        raise TokenfuseError(f"creating ACLs at {settings.bootstrap_servers} failed: " + "; ".join(
            f"{reason} ({len(refused)} of {len(bindings)}, e.g. {refused[0]})" for reason, refused in failures.items()))
    return len(bindings)


def _reason(error: KafkaError) -> str:
    # The broker's text for a refused CreateAcls is a dump of the request: name the cause instead.
    if error.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
        return "CLUSTER_AUTHORIZATION_FAILED: these credentials may not create ACLs (use an admin's)"
    return f"{error.name()}: {error.str()}"
