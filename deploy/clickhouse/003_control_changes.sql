-- Every control state published (the compacted topic keeps only the latest per scope), for
-- "who was blocked when, and why". A record is identified by its Kafka partition and offset.
CREATE TABLE IF NOT EXISTS control_changes
(
    scope             String,
    state             LowCardinality(String),
    budget_id         Nullable(String),
    reason            String,
    metric            Nullable(String),
    spent             Nullable(Int64),
    limit             Nullable(Int64),
    window_start      Nullable(DateTime64(3, 'UTC')),
    until             Nullable(DateTime64(3, 'UTC')),
    throttle_delay_ms Nullable(Int32),
    issued_at         DateTime64(3, 'UTC'),
    key_id            String,
    signed            Bool,     -- the signature verified with the sink's key
    kafka_partition   UInt32,
    kafka_offset      UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(issued_at)
ORDER BY (scope, issued_at, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 1000;
