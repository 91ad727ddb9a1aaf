"""Leases, the worker's side: runtimes ask for a slice of a shared scope's budget on
`<prefix>.lease-requests`; the worker that owns the scope grants signed leases on the compacted
`<prefix>.leases` topic. Protocol, sizing rule and the overshoot bound: docs/leases.md.

The invariant that makes the bound: per budget, scope and window, base + Σ caps <= limit, where
base is the spend already settled when the window's first lease was granted and a holder's cap is
how far its own spend in the window may go. The sum never depends on how far behind the pipeline
is, and it survives a restart: every grant is in the leases topic before a runtime can read it,
and a starting worker reads that topic to its end before it grants anything.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.control.leases import block_spend, lease_key, leasable, size_grant
from tokenfuse.control.signing import next_version, sign_record, verify_record
from tokenfuse.errors import DecodeError
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower, watermarks
from tokenfuse.kafka.partitions import scope_partition
from tokenfuse.usage.windows import metric
from tokenfuse.worker.budget_feed import BudgetFeed
from tokenfuse.worker.engine.record import ScopeRecord

log = logging.getLogger(__name__)

POLL_EVERY_S = 0.01
REQUESTS_PER_STEP = 500


@dataclass
class Held:
    """A decoded lease record as this worker knows it (its own writes, or read from the topic)."""

    window_start: int
    cap: int
    base: int
    expires_at: int
    version: int


class LeaseDesk:
    """Answers lease requests for the scopes this worker owns. `record(scope)`: the scope's
    settled record (the account stage's table); `owned()`: the deltas partitions owned;
    `ready()`: worker/readiness.py. Runs on the Faust event loop, a step every POLL_EVERY_S."""

    def __init__(self, settings: Settings, feed: BudgetFeed, record: Callable[[str], ScopeRecord | None],
                 owned: Callable[[], set[int]], ready: Callable[[], bool]):
        self.settings, self.feed, self.record, self.owned, self.ready = settings, feed, record, owned, ready
        self.ttl_ms = int(settings.lease_ttl_s * 1000)
        self.topic = settings.topic("leases")
        self.signer = settings.control_signer()
        self.verifier = settings.control_verifier()
        self.held: dict[str, Held] = {}  # lease key -> newest known
        self.holders: dict[tuple[str, str], dict[str, Held]] = {}  # (budget, scope) -> holder -> lease
        self._follower: CompactedTopicFollower | None = None
        self._requests: Consumer | None = None
        self._producer: Producer | None = None
        self.granted = 0  # grants sent, for /stats-like inspection

    def _decode(self, data: bytes) -> dict[str, Any]:
        lease = codec("Lease").decode(data)
        verify_record("Lease", lease, self.verifier, f"lease for {lease.get('scope')!r}")
        return lease

    async def step(self, now_ms: int) -> None:
        if not self.ready():
            return
        if self._follower is None:  # what this worker (or the one before it) granted
            self._follower = await asyncio.to_thread(CompactedTopicFollower, self.settings, self.topic, self._decode)
        if not self._follower.wait_caught_up(0):
            return
        if self._requests is None:
            self._requests = await asyncio.to_thread(self._open_requests)
            for key, lease in self._follower.snapshot().items():
                self._remember(key, lease)
        try:
            messages = self._requests.consume(REQUESTS_PER_STEP, timeout=0)
        except KafkaException as exc:
            log.warning("reading lease requests: %s", exc)
            return
        for msg in messages:
            if msg.error() is None:
                self.answer(msg.value(), now_ms)
        if messages:
            self._producer.poll(0)

    def _open_requests(self) -> Consumer:
        """Requests from now on: older ones are stale (runtimes ask again within a second)."""
        topic = self.settings.topic("lease-requests")
        consumer = Consumer({**self.settings.kafka_config, "group.id": f"tokenfuse-lease-desk-{self.settings.app_id}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, watermarks(consumer, TopicPartition(topic, p))[1]) for p in parts])
        self._producer = Producer({**self.settings.kafka_config, "enable.idempotence": True, "linger.ms": 0})
        return consumer

    def _remember(self, key: str, lease: Mapping[str, Any]) -> None:
        known = self.held.get(key)
        if known is not None and known.version >= lease["version"]:
            return
        held = Held(lease["window_start"], lease["cap"], lease["base"], lease["expires_at"], lease["version"])
        self.held[key] = held
        if lease["holder"]:
            self.holders.setdefault((lease["budget_id"], lease["scope"]), {})[lease["holder"]] = held

    def _newest(self, key: str) -> Held | None:
        """Ours, or newer from the topic (another worker owned the scope before a rebalance)."""
        assert self._follower is not None
        seen = self._follower.get(key)
        if seen is not None:
            self._remember(key, seen)
        return self.held.get(key)

    def answer(self, raw: bytes, now_ms: int) -> None:
        try:
            request = codec("LeaseRequest").decode(raw)
        except DecodeError as exc:
            log.warning("ignoring a lease request: %s", exc)
            return
        scope, budget_id, holder = request["scope"], request["budget_id"], request["holder"]
        if not holder or scope_partition(scope, self.settings.partitions) not in self.owned():
            return
        budget = next((b for b in self.feed.current().for_scope(scope) if b.id == budget_id), None)
        if budget is None or not leasable(budget):
            return  # unknown here (yet): the runtime asks again, and waits meanwhile
        start, end = budget.window.bounds(now_ms)
        record = self.record(scope) or ScopeRecord()
        settled = metric(record.window(budget.window, now_ms).totals, budget.budget["metric"])
        total_key, key = lease_key(budget_id, scope, ""), lease_key(budget_id, scope, holder)
        total, mine = self._newest(total_key), self._newest(key)
        if total is None or total.window_start != start:
            total = Held(start, 0, settled, 0, total.version if total else 0)
        cap = mine.cap if mine is not None and mine.window_start == start else 0
        active = sum(1 for h, lease in self.holders.get((budget_id, scope), {}).items()
                     if h != holder and lease.window_start == start and lease.expires_at > now_ms)
        used = request["used"] if request["window_start"] == start else 0
        grant = size_grant(block_spend(budget.budget), settled, total.base, total.cap, cap, used, active + 1)
        expires = min(now_ms + self.ttl_ms, end)
        stored = self.held.get(total_key)
        if stored is None or stored.window_start != start or grant.granted != total.cap:
            self._send(total_key, {"budget_id": budget_id, "scope": scope, "holder": "", "window_start": start,
                                   "cap": grant.granted, "base": total.base, "remaining": grant.remaining},
                       now_ms, total.version)
        self._send(key, {"budget_id": budget_id, "scope": scope, "holder": holder, "window_start": start,
                         "cap": grant.cap, "expires_at": expires, "exhausted": grant.remaining <= 0,
                         "remaining": grant.remaining}, now_ms, mine.version if mine else 0)
        self.granted += 1

    def _send(self, key: str, lease: dict[str, Any], now_ms: int, version: int) -> None:
        lease = {"base": 0, "expires_at": 0, "exhausted": False, "remaining": 0, **lease,
                 "issued_at": now_ms, "version": next_version(now_ms, version)}
        self._remember(key, lease)  # before it is sent: the next request sees it
        assert self._producer is not None
        self._producer.produce(self.topic, key=key.encode(),
                               value=codec("Lease").encode(sign_record("Lease", lease, self.signer)))
