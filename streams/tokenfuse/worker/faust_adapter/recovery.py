"""Where table recovery must read each changelog partition to: its last committed record.

Faust recovers a changelog partition until it has applied the record at its "highwater", the
end offset minus one. Under transactions the end is the last stable offset, and the record just
before it is usually a commit marker, which is never delivered. Faust then falls back on a
shortcut: once the consumer's position has passed the highwater and no record arrived for two
5-second polls, the partition counts as read. That shortcut can fire while fetched records are
still on their way to the table, and those records are then dropped: a scope recovered without
its record starts again from zero (found on the kept topics of a failed SIGKILL run).

So the worker's consumer (transactions.GatedCommitConsumer) reports, as end offsets, the offset
after the last committed data record (found here with a read_committed probe), and as position
the last record it has delivered, not merely fetched: recovery ends when that record is applied.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

PROBE_WINDOW = 64  # records read back from the end; grows 4x while only markers or aborted data
POLL_S = 0.05
PROBE_FETCH_WAIT_MS = 10
QUIET_S = 5.0  # nothing delivered for this long and the position short of the end: give up there


def committed_ends(kafka_config: dict[str, Any], ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """For each (topic, partition) and its last stable offset, the offset after its last
    committed data record, or its first offset when it holds none. `kafka_config`: the
    confluent-kafka settings shared by our clients (Settings.kafka_config)."""
    consumer = Consumer({**kafka_config, "group.id": "tokenfuse-recovery-probe",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True,
                         # The probe reads to the end, where the broker holds a fetch that finds
                         # no data for fetch.wait.max.ms (500 ms by default), and it reads the
                         # partitions one after another, each waiting out the previous one's
                         # fetch: about a second per partition, 8 took 7 s instead of 0.3 s, for
                         # recovery and again for readiness (half of a restart's 30 s).
                         "fetch.wait.max.ms": PROBE_FETCH_WAIT_MS})
    try:
        return {tp: _after_last_record(consumer, tp, end) for tp, end in ends.items()}
    finally:
        consumer.close()


def _after_last_record(consumer: Consumer, tp: tuple[str, int], end: int) -> int:
    topic, partition = tp
    low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    window = PROBE_WINDOW
    while True:
        start = max(low, end - window)
        last = _last_offset(consumer, topic, partition, start, end)
        if last is not None:
            return last + 1
        if start <= low:
            return low
        window *= 4


def _last_offset(consumer: Consumer, topic: str, partition: int, start: int, end: int) -> int | None:
    """The offset of the last committed record in [start, end), None if there is none."""
    here = TopicPartition(topic, partition, start)
    consumer.assign([here])
    last, quiet = None, 0.0
    while True:
        msg = consumer.poll(POLL_S)
        if msg is None:
            # The stable end is usually a commit marker, never delivered: the position tells.
            quiet += POLL_S
            if quiet >= QUIET_S or consumer.position([here])[0].offset >= end:
                return last
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return last
            raise KafkaException(msg.error())
        if msg.offset() >= end:
            return last
        last = msg.offset()
