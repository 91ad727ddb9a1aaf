"""The compacted budgets topic: read every current budget, publish changes and tombstones.

Key = budget id, value = Avro Budget, a null value (tombstone) deletes. `read_budgets` is the one
way to know what the topic holds (CLI, demo, worker start-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import BrokerUnavailable, ConfigError, TokenfuseError
from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.kafka.topics import admin_client, ensure_broker


def read_budgets(settings: Settings, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Every budget in the topic now: read from the beginning to the end offsets seen at the
    start, tombstones removing. Unreadable records are logged and skipped."""
    topic = _budgets_topic(settings)
    follower = CompactedTopicFollower(settings, topic, codec("Budget").decode)
    try:
        if not follower.wait_caught_up(timeout):
            raise BrokerUnavailable(f"timed out after {timeout:g}s reading {topic} to its end")
        return follower.snapshot()
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


def plan_apply(current: dict[str, dict[str, Any]], wanted: list[dict[str, Any]], prune: bool = True) -> Plan:
    """Compare the file's budgets with the topic's; `updated_at` alone is no change, so
    re-applying the same file publishes nothing."""
    plan = Plan()
    for budget in wanted:
        old = current.get(budget["id"])
        if old is None:
            plan.created.append(budget["id"])
        elif _content(old) == _content(budget):
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
    """Write budgets and tombstones with an idempotent producer; raise if any is not delivered."""
    topic = _budgets_topic(settings)
    failures: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.key().decode()}: {err.str()}")

    producer = Producer({**settings.kafka_config, "enable.idempotence": True})
    encode = codec("Budget").encode
    for budget in puts:
        producer.produce(topic, key=budget["id"].encode(), value=encode(budget), on_delivery=delivered)
    for budget_id in deletes:
        producer.produce(topic, key=budget_id.encode(), value=None, on_delivery=delivered)
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
    return {k: v for k, v in budget.items() if k != "updated_at"}
