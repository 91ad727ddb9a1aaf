-- Every usage event, once. How "once" holds (see tokenfuse/history/store.py):
--  * the sink drops event_ids it already stored before inserting (SDK spool replays arrive
--    again at other offsets, and a crash between insert and offset commit re-reads a batch);
--  * each insert carries a deduplication token made of the topic/partition/offset ranges it
--    came from, kept for the last non_replicated_deduplication_window inserts: a retried
--    batch whose first attempt did land is dropped by ClickHouse itself, even where the
--    sink's own read could miss it (a lagging replica in the cluster variant);
--  * ReplacingMergeTree over a sort key ending in event_id is the last safety net should two
--    sinks ever race on the same event.
-- The retention TTL is set from TOKENFUSE_HISTORY_RETENTION_DAYS by `tokenfuse db migrate`.
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
TTL toDateTime(event_time) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;
