-- Every usage event, once. How "once" holds (see tokenfuse/history/store.py):
--  * the sink drops event_ids it already stored before inserting (SDK spool replays arrive
--    again at other offsets, and a crash between insert and offset commit re-reads a batch);
--  * each insert carries a deduplication token made of the topic/partition/offset ranges it
--    came from, kept for the last non_replicated_deduplication_window inserts: a retried
--    batch whose first attempt did land is dropped by ClickHouse itself, even where the
--    sink's own read could miss it (a lagging replica in the cluster variant);
--  * plain MergeTree, not ReplacingMergeTree: replacing costs 3x the insert rate here (measured
--    with tests/benchmarks/bench_history.py) and would only act at some later merge, while
--    queries without FINAL would count a duplicate until then anyway. The two mechanisms above
--    keep duplicates out; one sink owns a partition at a time, and every copy of an event_id
--    arrives on the same partition (keyed by agent).
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (org, team, agent, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;
