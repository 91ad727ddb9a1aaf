-- Every version of every budget; deleted = 1 for a tombstone.
CREATE TABLE IF NOT EXISTS budgets_history
(
    budget_id    String,
    deleted      Bool,
    scope        String,
    metric       LowCardinality(String),
    window       String,
    timezone     String,
    limit        Int64,
    thresholds   String,   -- JSON
    updated_at   DateTime64(3, 'UTC'),
    kafka_offset UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (budget_id, kafka_offset);
