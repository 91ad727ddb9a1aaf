"""Faust tables as the worker uses them: values kept as our own records (a registered codec),
changelog records sent straight to the producer in the current transaction, deletions as
tombstones."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import faust
import orjson
from faust.streams import current_event


class RecordTable(faust.Table):
    """A table whose values are record objects in memory and their `to_json()` in the changelog.
    Recovery turns each changelog value back into a record (`from_json`) through the table's
    `_to_value` hook, the one place Faust converts recovered values."""

    def __init__(self, *args: Any, from_json: Callable[[Any], Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.from_json = from_json

    def _to_value(self, v: Any) -> Any:
        return None if v is None else self.from_json(v)


def record_table(app: faust.App, name: str, partitions: int, from_json: Callable[[Any], Any]) -> faust.Table:
    """Declare a RecordTable on the app, as `app.Table` declares its tables."""
    return app.tables.add(RecordTable(app, name=name, partitions=partitions, beacon=app.tables.beacon,
                                      from_json=from_json))


def changelog_record(table: Any, key: str, value: Any) -> tuple[bytes, bytes | None]:
    """A table key's changelog record: JSON, as Faust's json serializer reads it back (encoded
    here with orjson: Faust's own goes through its extensible encoder, several times slower). A deleted key's value is None, a tombstone: Faust's `Topic.send` would serialize
    it as JSON `null`, which recovery restores as a key holding None and compaction never
    removes."""
    key_bytes = orjson.dumps(key)
    if value is None:
        return key_bytes, None
    if isinstance(table, RecordTable):
        value = value.to_json()
    return key_bytes, orjson.dumps(value)


async def write(table: faust.Table, partition: int, key: str, value: Any) -> None:
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


async def write_many(table: faust.Table, partition: int, records: Mapping[str, Any]) -> None:
    """`write` for many keys of one partition while processing a stream event: their changelog
    records go to the event's transaction as whole record batches (aiokafka's send_batch), not
    one send each, which cost more than settling the scope (profiled: docs/extending.md)."""
    if not records:
        return
    store = table.data
    for key, value in records.items():
        store[key] = value
        store._key_partition[key] = partition
    encoded = [changelog_record(table, key, value) for key, value in records.items()]
    topic = table.changelog_topic.get_topic_name()
    if not (table.app.in_transaction and current_event() is not None):
        producer = await table.app.maybe_start_producer()
        for key_bytes, value_bytes in encoded:
            await producer.send(topic, key_bytes, value_bytes, partition, None, None)
        return
    producer, lock = table.app.consumer.transactions.current_producer()
    async with lock:
        batch = producer.create_batch()
        for key_bytes, value_bytes in encoded:
            if batch.append(key=key_bytes, value=value_bytes, timestamp=None) is None:  # full
                await producer.send_batch(batch, topic, partition=partition)
                batch = producer.create_batch()
                batch.append(key=key_bytes, value=value_bytes, timestamp=None)
        await producer.send_batch(batch, topic, partition=partition)


def drop_deleted(table: faust.Table) -> None:
    """Earlier versions of the worker sent deletions as JSON null, not as tombstones (see
    changelog_record): recovered, those keys hold None. Drop them."""
    for k in [k for k, v in table.data.items() if v is None]:
        table.data.pop(k)

