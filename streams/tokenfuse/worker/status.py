"""Backlog awareness, the worker's side: once a second, a signed heartbeat per deltas partition
this worker owns, on the compacted `<prefix>.worker-status` topic (key `deltas:<partition>`),
saying how fresh its settled picture of that partition's scopes is and how far behind it is.

Fresh as of T means: every usage event in the usage topic before T has been ingested, and the
deltas it made are settled, with their control states published. It is measured from the
consumer group's committed offsets (Faust commits them in the transaction that publishes the
outputs, so committed = visible to runtimes) against the partitions' ends, in two hops: each
tick notes the ends of every usage partition and of the owned deltas partitions; usage is fresh
as of the latest tick whose usage ends are all committed; a deltas partition is fresh as of the
usage freshness known at the latest tick whose deltas end it has committed (the deltas written
for that usage were in it by then). A runtime applies its fail policy when the scopes it shares
have been blind longer than TOKENFUSE_MAX_BLIND (sdk/backlog.py, docs/leases.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.control.signing import next_version, sign_record
from tokenfuse.kafka.codec import codec

log = logging.getLogger(__name__)

KEEP_TICKS = 1200  # 20 minutes of one-second ticks: a partition behind by more reports fresh_ms 0


@dataclass(frozen=True)
class Tick:
    at_ms: int
    deltas_ends: dict[int, int]
    usage_fresh_ms: int  # usage freshness as known at this tick


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    fresh_ms: int
    deltas_lag: int


@dataclass
class Freshness:
    """The two-hop freshness computation, pure: fed with offsets, no Kafka."""

    usage_ticks: deque[tuple[int, dict[int, int]]] = field(default_factory=lambda: deque(maxlen=KEEP_TICKS))
    ticks: deque[Tick] = field(default_factory=lambda: deque(maxlen=KEEP_TICKS))
    usage_fresh_ms: int = 0

    def observe(self, now_ms: int, usage_ends: dict[int, int], usage_committed: dict[int, int],
                deltas_ends: dict[int, int], deltas_committed: dict[int, int]) -> list[PartitionStatus]:
        """One tick: ends were read at now_ms, committed offsets after them. Returns each deltas
        partition's freshness (0: not known yet) and lag."""
        self.usage_ticks.append((now_ms, usage_ends))
        for at_ms, ends in reversed(self.usage_ticks):
            if at_ms <= self.usage_fresh_ms:
                break
            if all(usage_committed.get(p, 0) >= end for p, end in ends.items()):
                self.usage_fresh_ms = at_ms
                break
        self.ticks.append(Tick(now_ms, deltas_ends, self.usage_fresh_ms))
        out = []
        for q, committed in deltas_committed.items():
            fresh = 0
            for tick in reversed(self.ticks):
                # A deltas partition written in transactions ends with a commit marker that is
                # never consumed: one short of the end is at the end.
                if q in tick.deltas_ends and committed >= tick.deltas_ends[q] - 1:
                    fresh = tick.usage_fresh_ms
                    break
            out.append(PartitionStatus(q, fresh, max(0, deltas_ends[q] - committed)))
        return out


class StatusBeacon:
    """Publishes the heartbeats. `owned(topic)`: the partitions of a topic this worker owns;
    `ready()`: readiness (worker/readiness.py)."""

    def __init__(self, settings: Settings, owned: Callable[[str], set[int]], ready: Callable[[], bool]):
        self.settings = settings
        self.owned = owned
        self.ready = ready
        self.usage, self.deltas = settings.topic("usage"), settings.topic("deltas")
        self.topic = settings.topic("worker-status")
        self.signer = settings.control_signer()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.freshness = Freshness()
        self.versions: dict[int, int] = {}
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    async def beat(self, now_ms: int) -> None:
        owned = self.owned(self.deltas)
        if not owned:
            return
        try:
            measured = await asyncio.to_thread(self._measure, owned)
        except KafkaException as exc:  # the broker is away: no heartbeat, runtimes see the silence
            log.warning("worker status not measured: %s", exc)
            return
        statuses = self.freshness.observe(now_ms, *measured)
        usage_lag = sum(max(0, end - measured[1].get(p, 0)) for p, end in measured[0].items())
        if self._producer is None:
            self._producer = Producer({**self.settings.kafka_config, "linger.ms": 5})
        for s in statuses:
            self._producer.produce(self.topic, key=f"deltas:{s.partition}".encode(),
                                   value=self.encode(s, usage_lag, now_ms))
        self._producer.poll(0)

    def encode(self, s: PartitionStatus, usage_lag: int, now_ms: int) -> bytes:
        version = self.versions[s.partition] = next_version(now_ms, self.versions.get(s.partition, 0))
        record = {"partition": s.partition, "partitions": self.settings.partitions, "worker": self.worker,
                  "fresh_ms": s.fresh_ms, "usage_lag_events": usage_lag, "deltas_lag_events": s.deltas_lag,
                  "ready": self.ready(), "issued_at": now_ms, "version": version}
        return codec("WorkerStatus").encode(sign_record("WorkerStatus", record, self.signer))

    def _measure(self, owned: set[int]) -> tuple[dict[int, int], dict[int, int], dict[int, int], dict[int, int]]:
        """Ends of every usage partition (each feeds every scope) and of the owned deltas
        partitions, then the group's committed offsets (read after the ends)."""
        consumer = self._client()
        parts = [TopicPartition(self.usage, p) for p in range(self.settings.partitions)]
        parts += [TopicPartition(self.deltas, q) for q in sorted(owned)]
        lows, ends = {}, {}
        for tp in parts:
            lows[(tp.topic, tp.partition)], ends[(tp.topic, tp.partition)] = consumer.get_watermark_offsets(
                tp, timeout=5, cached=False)
        # The consumer's own group is the worker's: committed() asks the group coordinator for its
        # offsets (OffsetFetch) without joining it. Not the admin API: librdkafka 2.x aborts the
        # process (rd_kafka_enq_once_del_source_return: eonce->refcnt > 0) when an admin request
        # that timed out during a broker outage meets the broker's return (test_faults.py).
        answer = consumer.committed(parts, timeout=5)
        committed = {}
        for tp in answer:
            key = (tp.topic, tp.partition)
            committed[key] = tp.offset if tp.offset >= 0 else lows[key]  # never committed: from the start
        split = ({}, {}, {}, {})
        for (topic, p), end in ends.items():
            usage = topic == self.usage
            split[0 if usage else 2][p] = end
            split[1 if usage else 3][p] = committed[(topic, p)]
        return split

    def _client(self) -> Consumer:
        """A consumer that reads partition ends and the worker group's committed offsets. It never
        subscribes, so it never joins the group: no rebalance, no commit."""
        if self._consumer is None:
            self._consumer = Consumer({**self.settings.kafka_config, "group.id": self.settings.app_id,
                                       "enable.auto.commit": False})
        return self._consumer
