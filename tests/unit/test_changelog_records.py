"""Table changelog records as the worker writes them (worker/faust_adapter/transactions.py), read back the way
Faust's memory store recovers a table after a restart or a rebalance. No broker: the records are
built and applied in memory."""

from __future__ import annotations

from types import SimpleNamespace

import faust

from tokenfuse.worker.faust_adapter.tables import changelog_record


def recover(table: faust.Table, records: list[tuple[bytes, bytes | None]]) -> dict:
    """Apply changelog records (key bytes, value bytes) the way Faust's table recovery does."""
    changelog, serializers = table.changelog_topic, table.app.serializers
    events = [SimpleNamespace(
        key=serializers.loads_key(changelog.key_type, k, serializer=changelog.key_serializer),
        value=None if v is None else serializers.loads_value(changelog.value_type, v,
                                                             serializer=changelog.value_serializer),
        message=SimpleNamespace(key=k, value=v, partition=0)) for k, v in records]
    table.data.apply_changelog_batch(events, to_key=table._to_key, to_value=table._to_value)
    return dict(table.data.items())


def test_a_deleted_key_is_a_tombstone_and_stays_deleted_after_recovery():
    app = faust.App("changelog-records", store="memory://", autodiscover=False)
    table = app.Table("scope-state", partitions=1)
    written = changelog_record(table, "run:r1", {"t": 5})
    deleted = changelog_record(table, "run:r1", None)
    kept = changelog_record(table, "run:r2", {"t": 7})
    assert deleted == (written[0], None)  # same key, no value: compaction removes the key
    assert recover(table, [written, kept, deleted]) == {"run:r2": {"t": 7}}
