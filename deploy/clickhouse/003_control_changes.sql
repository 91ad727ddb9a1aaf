-- Every control state published (the compacted topic keeps only the latest per scope).
CREATE TABLE IF NOT EXISTS control_changes
(
    scope        String,
    state        LowCardinality(String),
    budget_id    Nullable(String),
    reason       String,
    spent        Nullable(Int64),
    limit        Nullable(Int64),
    until        Nullable(DateTime64(3, 'UTC')),
    issued_at    DateTime64(3, 'UTC'),
    signed       Bool,
    kafka_partition UInt32,
    kafka_offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(issued_at)
ORDER BY (scope, issued_at, kafka_partition, kafka_offset);
