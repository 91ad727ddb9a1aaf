"""What Kafka says now, for the dashboard: verified control states, budgets, the latest alerts.

Each source is followed by a thread of its own; every change calls `on_change(source)` from that
thread (the server sets it to the hub's), and the hub pushes the pages' live parts on at once (no
query, no polling). Control
states are verified with the control key like a runtime does: unsigned or forged ones are never
shown (the dashboard role requires TOKENFUSE_CONTROL_KEY, config/roles.py).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.control.signing import decode_verified, newer
from tokenfuse.dashboard.alerts import AlertFeed
from tokenfuse.errors import BrokerUnavailable, ConfigError
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower, watermarks
from tokenfuse.kafka.topics import admin_client, ensure_broker

# Enforcement states shown as "blocked or throttled", most severe first.
SEVERITY = {"block": 0, "throttle": 1, "warn": 2}


class LiveState:
    def __init__(self, settings: Settings, catch_up_seconds: float = 30.0):
        self.on_change: Callable[[str], None] = lambda source: None
        ensure_broker(settings)
        missing = sorted(set(settings.topic(t) for t in ("control", "budgets", "alerts", "usage"))
                         - set(admin_client(settings).list_topics(timeout=10).topics))
        if missing:
            raise ConfigError(f"topic(s) {', '.join(missing)} do not exist (run `tokenfuse topics create`)")
        verifier = settings.control_verifier()
        self.control = CompactedTopicFollower(settings, settings.topic("control"),
                                              lambda data: decode_verified(data, verifier),
                                              ignore_tombstones=True, supersedes=newer,
                                              on_change=lambda *_: self.on_change("control"))
        self.budget_follower = CompactedTopicFollower(settings, settings.topic("budgets"), codec("Budget").decode,
                                                      on_change=lambda *_: self.on_change("budgets"))
        self.alerts = AlertFeed(settings, on_change=lambda _: self.on_change("alerts"))
        for follower in (self.control, self.budget_follower):
            follower.wait_caught_up(catch_up_seconds)
        self._usage = Consumer({**settings.kafka_config, "group.id": "tokenfuse-dashboard-usage-offsets"})
        usage = settings.topic("usage")
        self._usage_partitions = [TopicPartition(usage, p)
                                  for p in self._usage.list_topics(usage, timeout=10).topics[usage].partitions]

    def usage_marks(self) -> tuple[int, ...]:
        """The usage topic's end offsets: they move whenever usage arrives (no record is read)."""
        try:
            return tuple(watermarks(self._usage, tp, timeout=5)[1] for tp in self._usage_partitions)
        except KafkaException as exc:
            raise BrokerUnavailable(f"reading the end offsets of the usage topic: {exc}") from None

    def budgets(self) -> list[dict[str, Any]]:
        return sorted((b for b in self.budget_follower.snapshot().values() if not b.get("deleted")),
                      key=lambda b: b["id"])

    def state(self, scope: str) -> dict[str, Any] | None:
        """The scope's latest verified control state, without its signature."""
        state = self.control.snapshot().get(scope)
        return None if state is None else public_state(state)

    def restricted(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Scopes blocked, throttled or warned now: verified, not expired; most severe first."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        return restricted_states(self.control.snapshot().values(), now_ms)

    def close(self) -> None:
        for source in (self.control, self.budget_follower, self.alerts):
            source.close()
        self._usage.close()


def public_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "signature"}


def restricted_states(states: Any, now_ms: int) -> list[dict[str, Any]]:
    """The states of `states` that restrict a runtime at `now_ms` (a block past its `until` has
    released by itself), most severe first, newest first within a severity."""
    active = [public_state(s) for s in states
              if s["state"] in SEVERITY and (s.get("until") is None or s["until"] > now_ms)]
    active.sort(key=lambda s: (SEVERITY[s["state"]], -s["issued_at"], s["scope"]))
    return active
