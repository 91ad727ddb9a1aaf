-- Every usage event, once. The sink filters event_ids it already stored before inserting
-- (exact for retries and SDK spool replays); ReplacingMergeTree on the sort key, which ends
-- with event_id, is the safety net if two sinks ever raced.
CREATE TABLE IF NOT EXISTS usage_events
(
    event_id        String,
    event_time      DateTime64(3, 'UTC'),
    org             LowCardinality(String),
    team            LowCardinality(String),
    agent           String,
    run             Nullable(String),
    user            Nullable(String),
    model           LowCardinality(String),
    provider        LowCardinality(String),
    input_tokens    UInt64,
    output_tokens   UInt64,
    cached_tokens   UInt64,
    cost_micro_usd  UInt64,
    cost_source     LowCardinality(String),   -- event | catalog | fallback
    tags            Map(String, String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (org, team, agent, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL 400 DAY;
