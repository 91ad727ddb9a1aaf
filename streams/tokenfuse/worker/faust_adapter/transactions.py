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
from typing import Any, Awaitable, Iterable, Optional

from faust.streams import _current_event, current_event
from faust.transport.consumer import TransactionManager

from tokenfuse.worker.faust_adapter.consumer import BatchDeliveryConsumer
from tokenfuse.worker.faust_adapter.recovery import committed_ends


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
        self.with_data.difference_update(self._transactional_id(tp.topic, tp.partition) for tp in offsets)
        return await super().commit(offsets, start_new_transaction)

    async def commit_without_offsets(self) -> None:
        """Commit transactions that hold messages but no input offsets: the sweep's control
        states have no input event and must not wait for the next one on their partition (nor
        outlive the transaction timeout)."""
        pending, producer = self.with_data, self.producer
        while pending:
            tid = pending.pop()
            async with producer._trn_locks[tid]:
                txn = producer._transaction_producers.get(tid)
                if txn is not None:  # None: its partition was revoked, its transaction aborted
                    await txn.commit_transaction()
                    await txn.begin_transaction()


class GatedCommitConsumer(BatchDeliveryConsumer):
    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        async with commit_gate(self.app):
            committed = await super().force_commit(topics, start_new_transaction=start_new_transaction)
            await self.transactions.commit_without_offsets()
            return committed

    async def perform_seek(self) -> None:
        """Seek the stream partitions to their committed offsets with the flow stopped.

        After recovery Faust resumes the partitions and seeks while messages flow, then resumes
        flow control, which clears the streams' queues. Messages delivered from the new position
        in between were cleared although marked read: never processed, never acked. The worker
        went on with later messages, the committed offset stuck at that hole, and after the next
        restart the hole's events were judged late against the newer event times already
        recorded. With the flow stopped nothing is delivered until Faust resumes it, after the
        clear. (The drain loop checks the flow before each message it delivers, so it cannot move
        the read offset after the seek.)"""
        self.stop_flow()
        await super().perform_seek()

    async def seek_to_committed(self) -> Any:
        """Seek every stream partition to its committed offset, and those with none (or 0) to
        the beginning.

        aiokafka seeks only partitions whose committed offset is above 0 and leaves the others
        where fetching has taken them. A fetch that ran while recovery resumed the stream
        partitions took records from the client and they were dropped with the streams'
        queues: a partition nobody had committed yet (a deltas partition, when the first
        worker was killed within a second) then resumed after them, and those deltas were
        never counted (found on a SIGKILL test run: 3,555 events missing from `global`)."""
        committed = await super().seek_to_committed()
        never = [tp for tp, offset in committed.items() if not offset and not self._is_changelog_tp(tp)]
        if never:
            await self._thread.seek_to_beginning(*never)
        return committed

    async def highwaters(self, *partitions: Any) -> Any:
        """Where table recovery must read each changelog partition to (recovery.py).

        Faust would take the consumer's cached last stable offset, None for a partition not
        fetched since its assignment: a partition taken over from another worker looked empty
        and its state was silently skipped."""
        thread = self._thread
        stable = await thread.call_thread(thread._ensure_consumer().end_offsets, list(partitions))
        ends = await asyncio.to_thread(committed_ends, self.app.__dict__["_tokenfuse_kafka_config"],
                                       {(tp.topic, tp.partition): end for tp, end in stable.items()})
        return {tp: ends[(tp.topic, tp.partition)] for tp in stable}

    async def position(self, tp: Any) -> int:
        """The offset of the last record delivered to the app, not merely fetched (recovery.py);
        -1 before the first. (Faust's recovery compares it with an int: None raised a TypeError
        that it logged as "Error in recovery" and that skipped its check of other partitions.)"""
        offset = self._read_offset.get(tp)
        return -1 if offset is None else offset


def changelog_record(table: Any, key: str, value: Any) -> tuple[bytes, bytes | None]:
    """A table key's changelog record. A deleted key's value is None, a tombstone: Faust's
    `Topic.send` would serialize it as JSON `null`, which recovery restores as a key holding
    None and compaction never removes."""
    changelog = table.changelog_topic
    key_bytes = changelog.prepare_key(key, None)[0]
    return key_bytes, None if value is None else changelog.prepare_value(value, None)[0]


async def write(table: Any, partition: int, key: str, value: Any) -> None:
    """Set (or, with None, delete) a table key and send its changelog record now, in the
    current transaction: the current event's partition's, else `partition`'s. (Straight to
    the producer: Faust's channel layers cost more than the send itself.)"""
    store = table.data
    if value is None:
        store.pop(key, None)
        store._key_partition.pop(key, None)
    else:
        store[key] = value
        # The memory store drops the keys of partitions no longer owned after a rebalance, but
        # knows only the partitions of keys it recovered: tell it this key's.
        store._key_partition[key] = partition
    producer = await table.app.maybe_start_producer()
    key_bytes, value_bytes = changelog_record(table, key, value)
    await producer.send(table.changelog_topic.get_topic_name(), key_bytes, value_bytes, partition, None, None)


def commit_gate(app: Any) -> asyncio.Lock:
    """Held by an agent for a whole batch (outputs and acks) and by each commit."""
    gate = app.__dict__.get("_tokenfuse_commit_gate")
    if gate is None:
        gate = app.__dict__["_tokenfuse_commit_gate"] = asyncio.Lock()
    return gate


async def ack_all(stream: Any, events: Iterable[Any]) -> None:
    """Ack a batch inside the gate, so the next commit holds its offsets with its outputs.
    (take_events acks them again after the batch; a second ack of a message is a no-op.)"""
    for event in events:
        await stream.ack(event)


def use_source_partition_transactions(app: Any, kafka_config: dict[str, Any]) -> None:
    """Install on an app before it starts (its transport creates the consumer and the
    transaction manager). `kafka_config` (Settings.kafka_config) is for the recovery probe."""
    app.transport.TransactionManager = SourcePartitionTransactions
    app.transport.Consumer = GatedCommitConsumer
    app.__dict__["_tokenfuse_kafka_config"] = kafka_config


def process_as(event: Any) -> None:
    """Make `event` the current event of this task, so table writes go to its changelog partition
    and sends join its partition's transaction.

    Only the context variable: `Stream._set_current_event` also sets the stream's
    `current_event` attribute, which `Stream.take_events` reads when it resumes buffering the
    next message; overwriting it there duplicates an old event and loses the new one."""
    _current_event.set(weakref.ref(event))
