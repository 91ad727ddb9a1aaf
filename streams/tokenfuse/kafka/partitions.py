"""Which partition owns a key: Kafka's default partitioner (murmur2), as every client of ours uses it."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)  # murmur2 is pure Python; busy scopes recur in every batch
def scope_partition(scope: str, partitions: int) -> int:
    """The deltas (and scope-state changelog) partition that owns a scope: Kafka's default
    partitioner on the scope key, so it matches a record keyed by the scope."""
    return (murmur2(scope.encode()) & 0x7FFFFFFF) % partitions
