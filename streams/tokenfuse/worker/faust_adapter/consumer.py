"""A Faust consumer that hands each fetched batch to the streams in one task, not one per message.

Faust's fetch loop (`Consumer._drain_messages`) delivers every message through
`wait_first(callback(message), suspend_flow.wait())`: two tasks, an `asyncio.wait` and their
clean-up per message. That race is what lets a rebalance interrupt a delivery blocked on a
full stream queue, but it cost more than half of the time of an agent that does nothing
(profiled with py-spy on `tests/benchmarks/naive_worker.py --floor`). Here the race covers a
whole fetched batch instead: the same interruption, once per batch. A message is marked read
only after its delivery returned, as before; the rest of an interrupted batch is not marked,
and the seek that follows a stopped flow reads it again. The fetch itself stays out of the
race, as in Faust's loop (see `_drain_messages`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, Awaitable, Callable

from aiokafka import TopicPartition
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer

from tokenfuse.worker.faust_adapter.recovery import committed_ends
from tokenfuse.worker.faust_adapter.transactions import commit_gate

# Let other coroutines (health checks, commits) run at least this often within a batch.
YIELD_EVERY = 100


BatchHandler = Callable[[list[Any]], Awaitable[None]]


def batch_handlers(app: Any) -> dict[str, BatchHandler]:
    """Topic name -> the coroutine its fetched messages are handed to, in one list per fetch."""
    return app.__dict__.setdefault("_tokenfuse_batch_handlers", {})


def consume_in_batches(app: Any, topic: Any, handler: BatchHandler) -> None:
    """Subscribe to `topic` and hand each fetch's messages of it to `handler` as one list,
    bypassing Faust's per-message delivery (conductor callback, Event, stream queue, take_events):
    profiled, that path cost a third of the worker's time. The handler must ack each message
    (`Consumer.ack`) once its outputs are sent, inside the commit gate, as an agent would."""
    batch_handlers(app)[topic.get_topic_name()] = handler
    app.topics.add(topic)


class BatchDeliveryConsumer(Consumer):
    _seeks = 0  # perform_seek calls so far (see _deliver_batch)

    async def _deliver(self, records: list[tuple[Any, Any]]) -> None:
        """Deliver one fetched batch in order, marking each message read once delivered. Stops
        when the flow stops: a seek to the committed offsets follows (rebalance, recovery), and
        the rest of the batch is read again from there, as with Faust's loop. Messages of
        topics with a batch handler go to it first, one list per topic.

        Offsets skipped between two delivered messages (transaction markers, aborted records)
        are recorded as a gap, so commits pass them. Also after offset 0, which Faust's loop
        took for "nothing read yet": a partition whose first record was followed by aborted
        records and their markers (a worker killed mid-transaction) then committed offset 1
        and never again, and a restarted worker never got ready (looped SIGKILL runs)."""
        handlers = batch_handlers(self.app)
        if handlers:
            batches: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
            rest = []
            for tp, message in records:
                (batches[tp.topic] if tp.topic in handlers else rest).append((tp, message))
            for topic, batch in batches.items():
                if not self.flow_active:
                    return
                # Shielded: a flow stopped mid-batch (a rebalance) must not cut a batch whose
                # outputs are half sent; Faust's revoke waits for its messages to be acked
                # (wait_empty) before it commits.
                await asyncio.shield(self._deliver_batch(handlers[topic], batch))
            records = rest
        callback, read_offset = self.callback, self._read_offset
        commit_every = self._commit_every
        for n, (tp, message) in enumerate(records, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if not self.flow_active:
                return
            offset, last = message.offset, read_offset.get(tp)
            if last is not None and offset < last:
                continue  # already delivered before a seek back
            if last is not None and offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)  # compacted or transaction markers
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(message)
            read_offset[tp] = offset

    async def _deliver_batch(self, handler: BatchHandler, batch: list[tuple[Any, Any]]) -> None:
        """One topic's messages of a fetch to its handler, minus those delivered before a seek
        back; tracked as unacked until the handler acks them, as Faust's conductor does."""
        read_offset, fresh = self._read_offset, []
        last = {}
        gaps_tracked = self.app.topics.acks_enabled_for(batch[0][0].topic)
        for tp, message in batch:
            offset = message.offset
            previous = last.get(tp, read_offset.get(tp))
            if previous is not None and offset < previous:
                continue  # already delivered before a seek back
            if previous is not None and offset - previous > 1 and gaps_tracked:  # 0 too: see _deliver
                await self._add_gap(tp, previous + 1, offset)  # compacted or transaction markers
            last[tp] = offset
            fresh.append(message)
        if not fresh or not (self.flow_active and self.app.flow_control.is_active()):
            return  # the flow stopped: a seek follows, and these are read again from there
        seeks = self._seeks
        # Tracked as unacked as Faust's streams track every message, so that a revoke waits
        # (wait_empty) until the batch is acked: its last message stands for it (it is acked
        # last), since a weak reference per message cost 6% of the worker's time.
        self._unacked_messages.add(fresh[-1])
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
        await handler(fresh)
        if self._seeks == seeks:
            # Not after a seek made meanwhile (recovery's, while this batch waited for the commit
            # gate): it set the read offsets back to the committed ones, and moving them past
            # its messages again would skip them when they are read again (a hole in the acks
            # that stalls the partition's commits).
            read_offset.update(last)

    async def perform_seek(self) -> None:
        self._seeks += 1
        await super().perform_seek()

    async def _drain_messages(self, fetcher: Any) -> None:
        stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                # The fetch runs outside the race below: cancelled, it would still take its
                # records from the client in the consumer thread, which runs a seek alongside,
                # and they would be lost (the next fetch starts after them). getmany yields
                # nothing once the flow has stopped, and seeks back if it stopped mid-fetch.
                records = [record async for record in self.getmany(timeout=1.0)]
                await self.sleep(0)  # an empty fetch can return without yielding to the loop
                if records and not self.should_stop:
                    await self.wait_first(self._deliver(records), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except (*self.consumer_stopped_errors, asyncio.CancelledError):
            if not self.transport.app.should_stop:
                raise
            self.log.info("Consumer stopped, shutting down...")
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


# How long the broker may hold a fetch that finds nothing new. Faust hard-codes 1500 ms; under
# read_committed a transaction's commit does not end a fetch held on its partition, so every
# hop (usage -> deltas -> control) waited up to that long (bench_latency: p50 1.7 s at 1,500/s).
FETCH_MAX_WAIT_MS = 50


class ShortWaitConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its fetcher when it starts
        return consumer


class GatedCommitConsumer(BatchDeliveryConsumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

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

    def verify_event_path(self, now: float, tp: Any) -> None:
        """Faust's livelock check (every 0.5 s once a rebalance ends) reads each partition's
        position from aiokafka, which asserts while a partition waits for a reset: one that
        `seek_to_committed` sent to the beginning has none until the broker answered. The
        AssertionError crashed the consumer and the worker exited (found on a looped SIGKILL
        test run, a deltas partition never committed before the kill). Such a partition has
        nothing to check yet: skip it."""
        state = self._thread._ensure_consumer()._fetcher._subscriptions.subscription.assignment.state_value(
            TopicPartition(tp.topic, tp.partition))
        if state is None or not state.has_valid_position:
            return None
        return super().verify_event_path(now, tp)

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
