"""The compacted budgets topic: read every current budget, publish signed changes and deletions.

Key = budget id, value = Avro Budget signed with the operator's budget key (budgets/signed.py);
a deletion is a signed record with `deleted` set. `read_budgets` is the one way to know what the
topic holds (CLI, demo): the budgets in force, as the worker sees them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from tokenfuse.budgets.signed import budget_decoder, in_force, sign_budget, signed_deletion
from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.errors import BrokerUnavailable, ConfigError, TokenfuseError
from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.kafka.topics import admin_client, ensure_broker


def read_budgets(settings: Settings, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Every budget in force now: read from the beginning to the end offsets seen at the start,
    signed deletions removing. With budget keys set, records that do not verify are logged and
    skipped, as the worker does; without them, signatures are not checked (a read-only view)."""
    topic = _budgets_topic(settings)
    follower = CompactedTopicFollower(settings, topic, budget_decoder(settings.budget_verifier()),
                                      ignore_tombstones=True)
    try:
        if not follower.wait_caught_up(timeout):
            raise BrokerUnavailable(f"timed out after {timeout:g}s reading {topic} to its end")
        return in_force(follower.snapshot())
    finally:
        follower.close()


@dataclass
class Plan:
    """What applying a file changes, by budget id."""

    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    puts: list[dict[str, Any]] = field(default_factory=list)


def plan_apply(current: dict[str, dict[str, Any]], wanted: list[dict[str, Any]], prune: bool = True,
               key_id: str | None = None) -> Plan:
    """Compare the file's budgets with the topic's; `updated_at` alone is no change, so
    re-applying the same file publishes nothing, except budgets signed with another key than
    `key_id` (re-signed: how budget keys rotate)."""
    plan = Plan()
    for budget in wanted:
        old = current.get(budget["id"])
        if old is None:
            plan.created.append(budget["id"])
        elif _content(old) == _content(budget) and key_id in (None, old.get("key_id")):
            plan.unchanged.append(budget["id"])
            continue
        else:
            plan.changed.append(budget["id"])
        plan.puts.append(budget)
    if prune:
        names = {b["id"] for b in wanted}
        plan.deleted = sorted(i for i in current if i not in names)
    return plan


def publish(settings: Settings, puts: list[dict[str, Any]], deletes: list[str], timeout: float = 30.0) -> None:
    """Write signed budgets and deletions with an idempotent producer; raise if any is not delivered."""
    signer = require(settings, "budget operator").budget_signer()
    topic = _budgets_topic(settings)
    failures: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.key().decode()}: {err.str()}")

    producer = Producer({**settings.kafka_config, "enable.idempotence": True})
    encode = codec("Budget").encode
    now = int(time.time() * 1000)
    for budget in [sign_budget(b, signer) for b in puts] + [signed_deletion(i, signer, now) for i in deletes]:
        producer.produce(topic, key=budget["id"].encode(), value=encode(budget), on_delivery=delivered)
    undelivered = producer.flush(timeout)
    if undelivered:
        failures.append(f"{undelivered} message(s) still undelivered after {timeout:g}s")
    if failures:
        raise TokenfuseError(f"writing {topic} failed: " + "; ".join(failures))


def delete_budget(settings: Settings, budget_id: str) -> None:
    if budget_id not in read_budgets(settings):
        raise ConfigError(f"no budget with id {budget_id!r} in {settings.topic('budgets')}")
    publish(settings, [], [budget_id])


def _budgets_topic(settings: Settings) -> str:
    ensure_broker(settings)
    topic = settings.topic("budgets")
    if topic not in admin_client(settings).list_topics(timeout=10).topics:
        raise ConfigError(f"topic {topic} does not exist (run `tokenfuse topics create`)")
    return topic


def _content(budget: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in budget.items() if k not in ("updated_at", "key_id", "signature", "deleted")}
