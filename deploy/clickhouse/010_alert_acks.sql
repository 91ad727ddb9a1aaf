-- Operators' feedback on alerts (`tokenfuse alerts ack`), from the compacted acks topic: who,
-- why, and whether the alert was expected (the detector then stays quiet until `until`).
-- Every ack is kept, by its Kafka position; a later ack for the same detector and scope wins.
CREATE TABLE IF NOT EXISTS alert_acks
(
    alert_id        String,
    kind            LowCardinality(String),
    scope           String,
    budget_id       Nullable(String),
    expected        Bool,
    until           Nullable(DateTime64(3, 'UTC')),
    reason          String,
    acked_by        String,
    acked_at        DateTime64(3, 'UTC'),
    signed          Bool,     -- the signature verified with the sink's key
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (scope, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 1000;
