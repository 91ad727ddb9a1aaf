"""The kill switch: this runtime's view of the compacted control topic.

A background thread assigns every partition of `<prefix>.control` at the beginning (no consumer
group, nothing committed: each runtime reads the whole current state), reads it with
read_committed (the worker writes in transactions), then follows it. Every value is verified with
the shared HMAC key; unsigned, forged or unreadable values are ignored and counted in `rejected`.
Tombstones are ignored as well: they cannot be signed, so a release has to be a signed `allow`.

States are ordered by their signed per-scope `version`: the newest version seen for a scope is
kept (allows too), and a state of a lower or equal version changes nothing. A replayed older
allow cannot lift a newer block, a replayed old block cannot re-block after a release, and a
state that disappears from the topic is not forgotten here.

Kept in memory: non-allow states of this runtime's fixed scopes (global, org, team, agent, the
default user and tags) and of the per-call kinds (run, user, model, tag), since one runtime serves
many runs and models. `check()` is a few dict lookups: it is meant to run before every LLM call.

The same consumer follows the worker's heartbeats (`<prefix>.worker-status`, when the topic
exists): a runtime whose shared scopes the worker has not settled for `max_blind` seconds applies
the fail policy, as when the control topic is unreadable (sdk/backlog.py).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.errors import BudgetExceeded, DecodeError, SignatureError
from tokenfuse.usage.scopes import PER_CALL_KINDS, runtime_scopes
from tokenfuse.sdk.backlog import Backlog
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.sdk.outage import KafkaLogGate, Outage
from tokenfuse.control.signing import Verifier, decode_verified

log = logging.getLogger(__name__)

_PER_CALL_PREFIXES = tuple(f"{kind}:" for kind in PER_CALL_KINDS)
_POLL_S = 0.05
_RETRY_MAX_S = 5.0  # between metadata requests while the control topic cannot be assigned


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class KillSwitch:
    def __init__(self, settings: Settings, options: FuseOptions, verifier: Verifier, *,
                 on_block: Callable[[dict[str, Any]], None] | None = None,
                 on_release: Callable[[str], None] | None = None, outage: Outage | None = None):
        self._settings = settings
        self.outage = outage or Outage()
        self._topic = settings.topic("control")
        self._status_topic = settings.topic("worker-status")
        self._verifier = verifier
        self._org, self._team, self._agent = options.org, options.team, options.agent
        self._fixed = set(runtime_scopes(options.org, options.team, options.agent, user=options.user))
        self._fixed.update(f"tag:{k}={v}" for k, v in options.tags.items())
        self._fail_closed = options.fail_policy == "closed"
        self._fail_after_s = options.fail_after_s
        self._max_blind_s = options.max_blind
        self._health_every_s = min(1.0, options.fail_after_s / 3)
        self.on_block, self.on_release = on_block, on_release
        self.states: dict[str, dict[str, Any]] = {}  # scope -> verified warn/throttle/block state
        self.versions: dict[str, int] = {}  # scope -> version of the newest state applied
        self.rejected = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._last_contact = time.monotonic()  # before the first read: time since start
        self._following_status = False
        self._warned_unhealthy = False
        shared = [s for s in runtime_scopes(options.org, options.team, options.agent)
                  if s.partition(":")[0] not in options.local_kinds]
        self.backlog = Backlog(shared, verifier, options.max_blind, _now_ms())
        self._thread = threading.Thread(target=self._run, name="tokenfuse-killswitch", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------------

    def check(self, run: str | None = None, user: str | None = None, model: str | None = None,
              tags: Mapping[str, str] | None = None) -> int:
        """Raise BudgetExceeded if a scope of this call is blocked; else return the throttle delay
        in milliseconds the caller should wait before the call (0: go ahead)."""
        if not self.healthy():
            self._fail_policy()
        if self.backlog.blind:
            self._blind_policy()
        states = self.states
        if not states:
            return 0
        scopes = runtime_scopes(self._org, self._team, self._agent, run, user, model)
        if tags:
            scopes += [f"tag:{k}={v}" for k, v in tags.items()]
        now, delay = _now_ms(), 0
        for scope in scopes:
            state = states.get(scope)
            if state is None or (state["until"] is not None and state["until"] <= now):
                continue
            if state["state"] == "block":
                raise BudgetExceeded(scope, budget_id=state["budget_id"], spent=state["spent"],
                                     limit=state["limit"], until_ms=state["until"], reason=state["reason"])
            if state["state"] == "throttle":
                delay = max(delay, state["throttle_delay_ms"] or 0)
        return delay

    def healthy(self) -> bool:
        """Has the control topic been read (or its end confirmed) within fail_after_s?"""
        return time.monotonic() - self._last_contact <= self._fail_after_s

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every state present in the topic when this started has been read."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _fail_policy(self) -> None:
        if not self._warned_unhealthy:
            self._warned_unhealthy = True
            log.warning("tokenfuse: control topic %s unreadable for over %ss; fail policy %s: %s",
                        self._topic, self._fail_after_s, "closed" if self._fail_closed else "open",
                        "blocking every call" if self._fail_closed else "allowing calls")
        if self._fail_closed:
            raise BudgetExceeded("control", reason=f"control topic unreadable for over {self._fail_after_s}s "
                                                   "and the fail policy is closed")

    def _blind_policy(self) -> None:
        if self._fail_closed:
            raise BudgetExceeded("control", reason=f"the worker has not settled this runtime's shared scopes for "
                                                   f"over {self._max_blind_s}s and the fail policy is closed")

    # -- the reader thread -----------------------------------------------------------------------

    def _run(self) -> None:
        # One consumer for the life of the switch: librdkafka reconnects it by itself, and a new
        # consumer per attempt would only add threads, connections and log lines.
        consumer = self._consumer()
        retry_s = 0.5
        partitions: list[TopicPartition] = []
        while not self._stop.is_set():
            if not partitions:
                partitions = self._assign(consumer)
                if not partitions:
                    consumer.poll(0)  # serves librdkafka's queued log lines and errors
                    self._expire()  # blocks end at `until` even while the broker is away
                    self._stop.wait(retry_s)
                    retry_s = min(retry_s * 2, _RETRY_MAX_S)
                    continue
                at_eof, last_health = set(), 0.0
            msg = consumer.poll(_POLL_S)
            if msg is not None:
                if msg.error() is None:
                    if msg.topic() == self._status_topic:
                        self.backlog.apply(msg.key(), msg.value())
                    else:
                        self._apply(msg.key(), msg.value())
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    if msg.topic() == self._topic:
                        at_eof.add(msg.partition())
                    if len(at_eof) == len(partitions) and not self._ready.is_set():
                        self._contact()
                        self._ready.set()
                else:
                    log.debug("reading %s: %s", self._topic, msg.error())
            if time.monotonic() - last_health >= self._health_every_s:
                last_health = time.monotonic()
                self._check_health(consumer, partitions)
                self._expire()
                self._check_backlog(consumer)
        consumer.close()

    def _consumer(self) -> Consumer:
        return Consumer({
            **self._settings.kafka_config,
            # librdkafka wants a group id; it is never used: partitions are assigned, not subscribed.
            "group.id": f"tokenfuse-killswitch-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            "logger": KafkaLogGate(self.outage),
        })

    def _assign(self, consumer: Consumer) -> list[TopicPartition]:
        """Assign every partition of the control topic from the beginning; [] if not readable yet."""
        try:
            meta = consumer.list_topics(self._topic, timeout=1).topics[self._topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
        except KafkaException as exc:
            log.debug("control topic %s not readable yet: %s", self._topic, exc)
            return []
        partitions = [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        consumer.assign(partitions)
        self._following_status = False
        return partitions

    def _check_backlog(self, consumer: Consumer) -> None:
        """Follow the worker's heartbeats once their topic exists; log when blindness starts and ends."""
        if not self._following_status:
            try:
                meta = consumer.list_topics(self._status_topic, timeout=1).topics[self._status_topic]
                if meta.error is None and meta.partitions:
                    consumer.incremental_assign([TopicPartition(self._status_topic, p, OFFSET_BEGINNING)
                                                 for p in meta.partitions])
                    self._following_status = True
            except KafkaException as exc:
                log.debug("worker status topic %s not readable yet: %s", self._status_topic, exc)
        now = _now_ms()
        if self.backlog.update(now):
            if self.backlog.blind:
                log.warning("tokenfuse: the worker has not settled the usage of %s for %.1f s (over "
                            "TOKENFUSE_MAX_BLIND=%ss); fail policy %s: %s", ", ".join(self.backlog.scopes),
                            self.backlog.blind_for_ms(now) / 1000, self._max_blind_s,
                            "closed" if self._fail_closed else "open",
                            "blocking every call" if self._fail_closed else "allowing calls")
            else:
                log.warning("tokenfuse: the worker has caught up with %s", ", ".join(self.backlog.scopes))

    def _check_health(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Once caught up, a broker answer about the topic's end counts as having read it."""
        if not self._ready.is_set():
            return
        try:
            for tp in partitions:
                consumer.get_watermark_offsets(tp, timeout=1, cached=False)
        except KafkaException:
            return
        self._contact()

    def _contact(self) -> None:
        self._last_contact = time.monotonic()
        self.outage.contact()
        if self._warned_unhealthy:
            self._warned_unhealthy = False
            log.warning("tokenfuse: control topic %s readable again", self._topic)

    def _wanted(self, scope: str) -> bool:
        return scope in self._fixed or scope.startswith(_PER_CALL_PREFIXES)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        scope = (key or b"").decode("utf-8", "replace")
        if value is None or not self._wanted(scope):
            return
        try:
            state = decode_verified(value, self._verifier)
        except (DecodeError, SignatureError) as exc:
            self.rejected += 1
            log.warning("tokenfuse: ignoring control record for %r: %s", scope, exc)
            return
        if state["scope"] != scope:
            self.rejected += 1
            log.warning("tokenfuse: ignoring control record keyed %r that names scope %r", scope, state["scope"])
            return
        if state["version"] <= self.versions.get(scope, -1):
            return  # an older state replayed (or this one read again): the newer one stands
        self.versions[scope] = state["version"]
        previous = self.states.get(scope)
        expired = state["until"] is not None and state["until"] <= _now_ms()
        if state["state"] == "allow" or expired:
            self.states.pop(scope, None)
        else:
            self.states[scope] = state
            if state["state"] == "warn":
                log.warning("tokenfuse: %s: %s", scope, state["reason"])
        was_blocked = previous is not None and previous["state"] == "block"
        if state["state"] == "block" and not expired:
            if not was_blocked:
                self._callback(self.on_block, state)
        elif was_blocked:
            self._callback(self.on_release, scope)

    def _expire(self) -> None:
        now = _now_ms()
        for scope, state in list(self.states.items()):
            if state["until"] is not None and state["until"] <= now:
                del self.states[scope]
                if state["state"] == "block":
                    self._callback(self.on_release, scope)

    @staticmethod
    def _callback(callback: Callable[[Any], None] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:  # a faulty callback must not stop the kill switch
            log.exception("tokenfuse: kill-switch callback %r failed", callback)
