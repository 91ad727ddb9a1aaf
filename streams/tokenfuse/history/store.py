"""Write a batch of rows so that each record is stored exactly once.

Two mechanisms, because duplicates come from two places:

1. A record re-read from Kafka (the sink crashed between insert and offset commit, or an insert
   timed out after it landed) and a usage event sent again with the same event_id at another
   offset (an SDK replaying its spool): before inserting, the store asks ClickHouse which of the
   batch's identities (event_id, alert_id, or Kafka partition+offset) it already holds and drops
   those. The sink is the only writer and inserts synchronously, so this read is exact; for
   usage it is bounded to the batch's event_time range (partition pruning + the event_id bloom
   filter) so it stays cheap on a large table.
2. Every insert carries a deterministic `insert_deduplication_token` built from the topic,
   partition and offset range of its records. ClickHouse remembers the tokens of the last
   inserts (`non_replicated_deduplication_window`, or the replicated log in the cluster variant)
   and drops a retry whose first attempt landed, even where the read in 1 could not see it yet
   (a lagging replica). A re-read batch after a crash usually has other boundaries, hence 1.

Rollup materialized views only see blocks that were really inserted, so they count each event
once too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tokenfuse.history.client import History
from tokenfuse.history.rows import Table


@dataclass
class Pending:
    """The rows of one table waiting in a batch, with where they came from."""

    table: Table
    rows: dict[Any, list[Any]] = field(default_factory=dict)  # identity -> row; first copy wins
    offsets: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # (topic, part) -> (lo, hi)
    duplicates_in_batch: int = 0

    def add(self, row: list[Any], topic: str, partition: int, offset: int) -> None:
        key = self.table.key(row)
        if key in self.rows:
            self.duplicates_in_batch += 1
        else:
            self.rows[key] = row
        lo, hi = self.offsets.get((topic, partition), (offset, offset))
        self.offsets[(topic, partition)] = (min(lo, offset), max(hi, offset))

    def dedup_token(self) -> str:
        ranges = ",".join(f"{t}/{p}/{lo}-{hi}" for (t, p), (lo, hi) in sorted(self.offsets.items()))
        return f"{self.table.name}:{hashlib.sha256(ranges.encode()).hexdigest()}"


def already_stored(history: History, pending: Pending) -> set[Any]:
    """The identities of `pending` that the table holds already."""
    table = pending.table
    where = f"{table.key_sql} IN {{keys:{table.key_type}}}"
    parameters: dict[str, Any] = {"keys": list(pending.rows)}
    if table.time_column:
        column = table.columns.index(table.time_column)
        times = [row[column] for row in pending.rows.values()]
        where += (f" AND {table.time_column} BETWEEN fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')"
                  f" AND fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC')")
        parameters.update(lo=min(times), hi=max(times))
    found = history.select(f"SELECT {table.key_sql} FROM {table.name} WHERE {where}", parameters).rows
    return {row[0] for row in found}


def write(history: History, pending: Pending) -> tuple[int, int]:
    """Insert the rows not stored yet; return (stored, duplicates dropped)."""
    if not pending.rows:
        return 0, pending.duplicates_in_batch
    known = already_stored(history, pending)
    fresh = [row for key, row in pending.rows.items() if key not in known]
    if fresh:
        history.insert(pending.table.name, fresh, pending.table.columns, pending.dedup_token())
    return len(fresh), len(known) + pending.duplicates_in_batch
