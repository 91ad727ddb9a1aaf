"""Exactly-once across repartitioning: put each output in the transaction of its input.

faust-streaming's TransactionManager sends a message through the transactional producer of the
message's *destination* partition. That producer exists only if this worker owns that partition,
and its transaction commits the offsets of that partition, not of the input that caused the
message. Our ingest agent sends each delta to the partition that owns its scope, so with two
workers a send would fail ("No transaction producer found") and, with one, the delta and the
offsets of its usage event would commit in different transactions.

Here a send made while processing an event goes through the producer of that event's partition:
the outputs and the input offsets commit atomically (Kafka's consume-transform-produce pattern).
A send with no current event (the sweep's changelog writes) goes in the transaction of its
destination partition, which is right for a changelog: its partition is its source partition.

Faust commits on a timer, concurrently with the agents. A commit that lands in the middle of a
batch would put part of the batch's outputs (deltas, alerts, table changelogs still in Faust's
send buffer) in a transaction whose offsets do not cover that batch: after a crash the batch is
processed again and its outputs counted twice, or half of them lost. So a batch, its acks and
a commit exclude each other (`commit_gate`), and table writes are sent and awaited inside the
batch (`write`) rather than through Faust's background send buffer, whose last message can
still be on its way when a commit starts.

A rebalance must not leave a transaction open either. After it, Faust seeks the partitions this
worker keeps back to their committed offsets and replays their changelogs up to the last
committed record, over in-memory state that already holds the open transaction's work: that
work would be counted twice, or overwritten and lost. So all work is committed when partitions
are revoked (`on_partitions_revoked`), and the producers of partitions no longer owned are
stopped, so that none is left behind to be fenced by the partition's next owner and to fail
when the partition comes back (`on_rebalance`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from typing import Any, Awaitable, Iterable, Optional

from aiokafka.errors import ProducerFenced
from faust.events import Event
from faust.streams import _current_event, current_event
from faust.transport.consumer import TransactionManager



class SourcePartitionTransactions(TransactionManager):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.with_data: set[str] = set()  # transactions sent to since their last commit

    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes], partition: Optional[int],
                   timestamp: Optional[float], headers: Any, *,
                   transactional_id: Optional[str] = None) -> Awaitable[Any]:
        destination = self.consumer.key_partition(topic, key, partition)
        event = current_event()
        if event is not None:
            tid = self._transactional_id(event.message.topic, event.message.partition)
        elif destination is not None and topic in self.app.assignor._topic_groups:
            tid = self._transactional_id(topic, destination)  # a changelog: its partition's transaction
        else:  # no input and no partition of ours (the sweep's control states): Faust's way
            return await super().send(topic, key, value, partition, timestamp, headers)
        self.with_data.add(tid)
        return await self.producer.send(topic, key, value, destination, timestamp, headers, transactional_id=tid)

    def current_producer(self) -> tuple[Any, asyncio.Lock]:
        """The aiokafka producer of the current event's transaction, and the lock Faust holds
        around its sends (tables.write_many sends a whole batch of records through it)."""
        event = current_event()
        tid = self._transactional_id(event.message.topic, event.message.partition)
        self.with_data.add(tid)
        return self.producer._transaction_producers[tid], self.producer._trn_locks[tid]

    def _transactional_id(self, topic: str, partition: int) -> str:
        return f"{self.app.conf.id}-{self.app.assignor.group_for_topic(topic)}-{partition}"

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Called once the agents are done with their current events: commit all of it."""
        await super().on_partitions_revoked(revoked)
        await self.consumer.force_commit()

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        """Faust stops the producers of revoked partitions except those it assigns as
        standbys; stop those too: this worker no longer writes for them."""
        await super().on_rebalance(assigned, revoked, newly_assigned)
        owned = self._tps_to_transactional_ids(self.app.assignor.assigned_actives())
        stale = [tid for tid in self.producer._transaction_producers if tid not in owned]
        if stale:
            self.log.info("Stopping %d transactional producers of partitions not owned any more", len(stale))
            await self._stop_transactions(stale)

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        """Faust's commit, with the transactions committed concurrently: Faust commits them one
        after the other (send offsets, commit, begin: four round trips each), and with one
        transaction per usage and per deltas partition a commit held the commit gate, and so
        the stages, for 100-250 ms of every 200 ms interval (its own "Timer commit is
        overlapping" warnings)."""
        by_tid: dict[str, dict[Any, int]] = defaultdict(dict)
        for tp, offset in offsets.items():
            by_tid[self._transactional_id(tp.topic, tp.partition)][tp] = offset
        self.with_data.difference_update(by_tid)
        try:
            await asyncio.gather(*(self._commit_one(tid, tp_offsets, start_new_transaction)
                                   for tid, tp_offsets in by_tid.items()))
        except ProducerFenced as exc:
            self.log.warning("ProducerFenced %s", exc)
            await self.app.crash(exc)
        return True

    async def commit_without_offsets(self) -> None:
        """Commit transactions that hold messages but no input offsets: the sweep's control
        states have no input event and must not wait for the next one on their partition (nor
        outlive the transaction timeout)."""
        pending, self.with_data = self.with_data, set()
        await asyncio.gather(*(self._commit_one(tid, None, True) for tid in pending))

    async def _commit_one(self, tid: str, offsets: dict[Any, int] | None, start_new_transaction: bool) -> None:
        producer = self.producer
        async with producer._trn_locks[tid]:
            txn = producer._transaction_producers.get(tid)
            if txn is None:  # its partition was revoked, its transaction aborted
                if offsets is not None:
                    self.log.warning("Commit invoked for unknown transaction %s", tid)
                return
            if offsets is not None:
                await txn.send_offsets_to_transaction(offsets, self.app.conf.id)
            await txn.commit_transaction()
            if start_new_transaction:
                await txn.begin_transaction()


def commit_gate(app: Any) -> asyncio.Lock:
    """Held by an agent for a whole batch (outputs and acks) and by each commit."""
    gate = app.__dict__.get("_tokenfuse_commit_gate")
    if gate is None:
        gate = app.__dict__["_tokenfuse_commit_gate"] = asyncio.Lock()
    return gate


async def ack_all(app: Any, messages: Iterable[Any]) -> None:
    """Ack a batch of messages (consume_in_batches) inside the gate, so the next commit holds
    their offsets with their outputs."""
    ack = app.consumer.ack
    for message in messages:
        ack(message)


def process_as(app: Any, message: Any) -> Event:
    """Make `message` the current event of this task, so table writes go to its changelog
    partition and sends join its partition's transaction. The context variable holds a weak
    reference (as Faust's streams set it): the caller keeps the returned event while it works."""
    event = Event(app, message.key, message.value, None, message)
    _current_event.set(weakref.ref(event))
    return event
