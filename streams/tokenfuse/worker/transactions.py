"""Exactly-once across repartitioning: put each output in the transaction of its input.

faust-streaming's TransactionManager sends a message through the transactional producer of the
message's *destination* partition. That producer exists only if this worker owns that partition,
and its transaction commits the offsets of that partition, not of the input that caused the
message. Our ingest agent sends each delta to the partition that owns its scope, so with two
workers a send would fail ("No transaction producer found") and, with one, the delta and the
offsets of its usage event would commit in different transactions.

Here a send made while processing an event goes through the producer of that event's partition:
the outputs and the input offsets commit atomically (Kafka's consume-transform-produce pattern).
Sends outside a stream (changelog flushes from Faust's buffer) keep Faust's behaviour, which is
right for them: a changelog partition is its source partition.
"""

from __future__ import annotations

from typing import Any, Awaitable, Optional

import weakref

from faust.streams import _current_event, current_event
from faust.transport.consumer import TransactionManager


class SourcePartitionTransactions(TransactionManager):
    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes], partition: Optional[int],
                   timestamp: Optional[float], headers: Any, *,
                   transactional_id: Optional[str] = None) -> Awaitable[Any]:
        event = current_event()
        if event is None:
            return await super().send(topic, key, value, partition, timestamp, headers)
        source = event.message
        group = self.app.assignor.group_for_topic(source.topic)
        return await self.producer.send(
            topic, key, value, self.consumer.key_partition(topic, key, partition), timestamp, headers,
            transactional_id=f"{self.app.conf.id}-{group}-{source.partition}",
        )


def use_source_partition_transactions(app: Any) -> None:
    """Install on an app before it starts (its transport creates the transaction manager)."""
    app.transport.TransactionManager = SourcePartitionTransactions


def process_as(event: Any) -> None:
    """Make `event` the current event of this task, so table writes go to its changelog partition
    and sends join its partition's transaction.

    Only the context variable: `Stream._set_current_event` also sets the stream's
    `current_event` attribute, which `Stream.take_events` reads when it resumes buffering the
    next message; overwriting it there duplicates an old event and loses the new one."""
    _current_event.set(weakref.ref(event))
