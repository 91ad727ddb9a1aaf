-- Rollups of usage per day for every scope an event counts toward (global, org, team,
-- agent, user, model, tag:k=v: the keys of tokenfuse.scopes; not runs, see 005) and model. Reports over long
-- periods and budget utilisation read these instead of the raw events. A materialized view
-- aggregates each inserted block; SummingMergeTree folds the partial sums on merge, so readers
-- still sum() by key. The deduplication window lets an insert the sink retries (same token)
-- be dropped here too, not counted twice (deduplicate_blocks_in_dependent_materialized_views).
CREATE TABLE IF NOT EXISTS usage_by_day
(
    scope          String,
    bucket         DateTime('UTC'),
    provider       LowCardinality(String),
    model          LowCardinality(String),
    events         UInt64,
    input_tokens   UInt64,
    output_tokens  UInt64,
    cached_tokens  UInt64,
    cost_micro_usd UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYear(bucket)
ORDER BY (scope, bucket, provider, model)
SETTINGS non_replicated_deduplication_window = 1000;

-- Fed by the usage_by_hour rollup rather than the raw events: the scopes are expanded once, and this
-- view aggregates already-aggregated rows (a sink batch holds a few minutes of events).
CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_day_mv TO usage_by_day AS
SELECT scope, toStartOfDay(bucket) AS bucket, provider, model,
       sum(events) AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_micro_usd) AS cost_micro_usd
FROM usage_by_hour
GROUP BY scope, bucket, provider, model;
