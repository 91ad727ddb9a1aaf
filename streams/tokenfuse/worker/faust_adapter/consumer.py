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
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer

# Let other coroutines (health checks, commits) run at least this often within a batch.
YIELD_EVERY = 100


class BatchDeliveryConsumer(Consumer):
    async def _deliver(self, records: list[tuple[Any, Any]]) -> None:
        """Deliver one fetched batch in order, marking each message read once delivered. Stops
        when the flow stops: a seek to the committed offsets follows (rebalance, recovery), and
        the rest of the batch is read again from there, as with Faust's loop."""
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
            if last and offset - last > 1 and self.app.topics.acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)  # compacted or transaction markers
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(message)
            read_offset[tp] = offset

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
