-- Cluster variant: see README.md in this folder. {cluster}, {shard} and {replica} are server macros.
-- Sharded by event_id, so every copy of an event lands on one shard, where the sink's lookup
-- sees it; replicas deduplicate retried inserts by token.
CREATE TABLE IF NOT EXISTS usage_events_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/usage_events', '{replica}')
PARTITION BY toYYYYMM(event_time)
ORDER BY (org, team, agent, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS usage_events ON CLUSTER '{cluster}' AS usage_events_local
ENGINE = Distributed('{cluster}', currentDatabase(), usage_events_local, cityHash64(event_id));
