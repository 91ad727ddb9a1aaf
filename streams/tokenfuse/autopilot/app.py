"""The autopilot role (`tokenfuse autopilot run POLICY`): follows the alerts topic (forecasts;
loops, spikes and runaways hold their scopes), the budgets topic and its own decisions topic,
and publishes adjusted budget versions, signed with the budget key, that the worker applies like
any operator's change.

Restart-safe by construction: everything it knows is read back from Kafka (book.py), each
decision's id is derived from its cause, and a change is published in one Kafka transaction
with its decision record and the alerts' consumer offsets. A restart reads the book first, so
an alert read again finds its decision there and changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from prometheus_client import CollectorRegistry, Counter

from tokenfuse.autopilot.book import Decision
from tokenfuse.autopilot.idle import idle_inputs
from tokenfuse.autopilot.pilot import Outcome, Pilot
from tokenfuse.autopilot.policy import Policy
from tokenfuse.autopilot.records import decision_decoder, encode_decision
from tokenfuse.budgets.signed import decode_verified_budget, sign_budget
from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.errors import BrokerUnavailable, DecodeError, TokenfuseError
from tokenfuse.history.sql import sql_runner
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.usage.windows import parse_window

log = logging.getLogger(__name__)
FIRST_READ_TIMEOUT_S = 30
POLL_S = 0.2


@dataclass(frozen=True)
class AutopilotMetrics:
    registry: CollectorRegistry
    decisions: Counter

    @classmethod
    def create(cls) -> "AutopilotMetrics":
        r = CollectorRegistry()
        return cls(r, Counter("tokenfuse_autopilot_decisions", "decisions published, by kind and status",
                              ["kind", "status"], registry=r))


class Autopilot:
    def __init__(self, settings: Settings, policy: Policy):
        self.settings = require(settings, "autopilot")
        self.signer = settings.budget_signer()
        verifier = settings.budget_verifier()
        self.pilot = Pilot(policy)
        self.metrics = AutopilotMetrics.create()
        self.budgets = CompactedTopicFollower(settings, settings.topic("budgets"),
                                              lambda data: decode_verified_budget(data, verifier),
                                              ignore_tombstones=True)
        self.decisions = CompactedTopicFollower(settings, settings.topic("autopilot"), decision_decoder(verifier),
                                                ignore_tombstones=True)
        self._seen = {"budgets": -1, "decisions": -1}
        self._idle_checked: dict[str, int] = {}  # budget id -> start of the window it was last checked at
        self.consumer = Consumer({
            **settings.kafka_config, "group.id": f"{settings.app_id}-autopilot", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000,
        })
        self.producer = Producer({**settings.kafka_config, "transactional.id": f"{settings.app_id}-autopilot"})

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        """Read the book to its end, then follow the alerts; a failed publication stops the role
        (its restart reads back what was published and goes on from there)."""
        try:
            self.producer.init_transactions(30)
            self.budgets.wait_first_read(FIRST_READ_TIMEOUT_S)
            self.decisions.wait_first_read(FIRST_READ_TIMEOUT_S)
            self.consumer.subscribe([self.settings.topic("alerts")])
            self._step([])
            on_ready()
            while not stop.is_set():
                self._step(self.consumer.consume(200, timeout=POLL_S))
        finally:
            self.consumer.close()
            self.budgets.close()
            self.decisions.close()

    def _step(self, messages: list) -> None:
        now = _now_ms()
        outcomes = self._sync(now)
        for msg in messages:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", msg.error())
                continue
            try:
                alert = codec("Alert").decode(msg.value())
            except DecodeError as exc:
                log.warning("skipping alert at offset %d: %s", msg.offset(), exc.reason)
                continue
            outcomes += self.pilot.alert(alert, now)
        outcomes += self.pilot.tick(now)
        outcomes += self._idle(now)
        if outcomes or messages:
            self._publish(outcomes, with_offsets=bool(messages))

    def _sync(self, now: int) -> list[Outcome]:
        """Take in what the followers read since the last step: budgets (an operator's version
        replaces any raise) and decisions (an operator's approval is acted on)."""
        outcomes: list[Outcome] = []
        if self.budgets.version != self._seen["budgets"]:
            self._seen["budgets"] = self.budgets.version
            for budget in self.budgets.snapshot().values():
                self.pilot.book.merge_budget(budget)
        if self.decisions.version != self._seen["decisions"]:
            self._seen["decisions"] = self.decisions.version
            for decision in sorted(self.decisions.snapshot().values(), key=lambda d: d.status == "approved"):
                outcomes += self.pilot.decision(decision, now)
        return outcomes

    def _idle(self, now: int) -> list[Outcome]:
        """Once per window of each budget with a shrink rule: its idle windows, from the history."""
        due = []
        for budget_id, budget in self.pilot.book.budgets.items():
            rule = self.pilot.policy.rule_for(budget_id)
            if rule is None or rule.shrink is None or budget["window"].startswith("rolling"):
                continue
            start = parse_window(budget["window"], budget.get("timezone") or "UTC").bounds(now)[0]
            if self._idle_checked.get(budget_id) != start:
                self._idle_checked[budget_id] = start
                due.append(budget)
        if not due:
            return []
        outcomes: list[Outcome] = []
        try:
            with sql_runner(self.settings, open_embedded=False) as run:
                for budget in due:
                    idle = idle_inputs(run, budget, now)
                    outcomes += self.pilot.idle(budget["id"], idle.spends, idle.recommendation, idle.window_start, now)
        except TokenfuseError as exc:
            log.warning("idle windows not checked (history unavailable): %s", exc)
        return outcomes

    def _publish(self, outcomes: list[Outcome], *, with_offsets: bool) -> None:
        """Budgets, decisions and the alerts' offsets in one transaction: all or nothing."""
        budgets, decisions = self.settings.topic("budgets"), self.settings.topic("autopilot")
        try:
            self.producer.begin_transaction()
            for outcome in outcomes:
                d = outcome.decision
                if outcome.budget is not None:
                    self.producer.produce(budgets, key=d.budget_id.encode(),
                                          value=codec("Budget").encode(sign_budget(outcome.budget, self.signer)))
                self.producer.produce(decisions, key=d.id.encode(), value=encode_decision(d, self.signer))
            if with_offsets:
                positions = self.consumer.position(self.consumer.assignment())
                self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(30)
        except KafkaException as exc:
            raise BrokerUnavailable(f"publishing {len(outcomes)} autopilot decision(s) failed: {exc}; "
                                    "a restart reads back what was published and goes on") from None
        for outcome in outcomes:
            self._report(outcome.decision)

    def _report(self, d: Decision) -> None:
        self.metrics.decisions.labels(d.kind, d.status).inc()
        print(f"autopilot: {d.id} {d.kind} {d.status} {d.budget_id} {d.old_limit} -> {d.new_limit}"
              f"{' (approved by ' + d.approved_by + ')' if d.approved_by else ''}: {d.reason}", flush=True)


def _now_ms() -> int:
    return int(time.time() * 1000)
