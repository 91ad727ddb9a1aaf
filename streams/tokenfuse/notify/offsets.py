"""Which offsets may be committed: a record's offset counts as done once every message it caused
was delivered or dead-lettered, and a partition commits up to its first record not done. So a
notifier killed at any point re-reads every record whose deliveries were not all finished."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Mapping

from tokenfuse.notify.transitions import Source

TopicPartition = tuple[str, int]


@dataclass
class _Record:
    offset: int
    remaining: int


@dataclass
class OffsetTracker:
    _order: dict[TopicPartition, deque[_Record]] = field(default_factory=dict)
    _by_offset: dict[Source, _Record] = field(default_factory=dict)
    _next: dict[TopicPartition, int] = field(default_factory=dict)
    _committed: dict[TopicPartition, int] = field(default_factory=dict)

    def read(self, source: Source, messages: int) -> None:
        """A record was read that caused `messages` deliveries (0: done already)."""
        record = _Record(source.offset, messages)
        self._order.setdefault((source.topic, source.partition), deque()).append(record)
        if messages:
            self._by_offset[source] = record

    def done(self, source: Source) -> None:
        record = self._by_offset.get(source)
        if record is None:  # its partition was revoked meanwhile
            return
        record.remaining -= 1
        if not record.remaining:
            del self._by_offset[source]

    def to_commit(self, positions: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Next offsets to commit per partition, only those that moved since the last call.
        `positions` are the consumer's: a partition with nothing outstanding commits its position,
        which is past transaction markers (so an idle notifier shows no lag on transactional topics)."""
        moved = {}
        for tp in set(self._order) | set(positions):
            records = self._order.get(tp)
            while records and records[0].remaining == 0:
                self._next[tp] = records.popleft().offset + 1
            if not records and positions.get(tp, -1) > self._next.get(tp, -1):
                self._next[tp] = positions[tp]
            if self._next.get(tp, -1) > self._committed.get(tp, -1):
                moved[tp] = self._committed[tp] = self._next[tp]
        return moved

    def forget(self, partitions: list[TopicPartition]) -> None:
        """The partitions went to another consumer (rebalance): stop tracking them."""
        for tp in partitions:
            for record in self._order.pop(tp, ()):
                self._by_offset.pop(Source(tp[0], tp[1], record.offset), None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
