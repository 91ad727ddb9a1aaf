"""The worker's read_committed probe (worker/faust_adapter/recovery.py), which tells table
recovery and readiness where each partition's last committed record is, on the real broker."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tokenfuse.worker.faust_adapter.recovery import committed_ends

PARTITIONS = 8


def test_the_probe_finds_each_partitions_last_committed_record_past_aborted_ones_quickly(broker):
    topic = f"test-probe-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    try:
        producer = Producer({"bootstrap.servers": broker, "transactional.id": topic})
        producer.init_transactions(30)
        for n in range(3):  # committed: partition p holds 10 * (p + 1) records per transaction
            producer.begin_transaction()
            for p in range(PARTITIONS):
                for _ in range(10 * (p + 1)):
                    producer.produce(topic, b"v", b"k", partition=p)
            producer.commit_transaction(30)
        producer.begin_transaction()  # then aborted records on every partition
        for p in range(PARTITIONS):
            producer.produce(topic, b"aborted", b"k", partition=p)
        producer.flush(30)
        producer.abort_transaction(30)
        reader = Consumer({"bootstrap.servers": broker, "group.id": topic, "isolation.level": "read_committed"})
        ends = {(topic, p): reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(PARTITIONS)}
        reader.close()

        started = time.monotonic()
        found = committed_ends({"bootstrap.servers": broker}, ends)
        took = time.monotonic() - started
        # Each transaction ends in a commit marker (one offset): the last committed record of
        # partition p is at 3 * (10 * (p + 1) + 1) - 2.
        assert found == {(topic, p): 3 * (10 * (p + 1) + 1) - 1 for p in range(PARTITIONS)}
        # Each partition's read ends at once, not after the broker's wait for data that never
        # comes (fetch.wait.max.ms: 500 ms by default made this 7 s).
        assert took < PARTITIONS * 0.4, f"{took:.1f}s for {PARTITIONS} partitions"
    finally:
        admin.delete_topics([topic])
