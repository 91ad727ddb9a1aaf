-- Every version of every budget as published on the budgets topic; deleted = 1 for a
-- tombstone. The latest row per budget_id (by updated_at, then offset) is the budget now.
CREATE TABLE IF NOT EXISTS budgets_history
(
    budget_id       String,
    deleted         Bool,
    scope           String,
    metric          LowCardinality(String),
    window          String,
    timezone        String,
    limit           Int64,
    thresholds      String,   -- JSON: [{"percent": 80, "action": "alert"}, ...]
    description     String,
    updated_at      DateTime64(3, 'UTC'),
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (budget_id, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 1000;
