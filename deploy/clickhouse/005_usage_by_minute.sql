-- Rollups of usage per minute for every scope an event counts toward (global, org, team,
-- agent, user, model, tag:k=v: the keys of tokenfuse.scopes) and model. Not runs: they are
-- countless and short-lived, a per-run rollup would be as big as the events and cost a third
-- of the insert rate; run reports read usage_events. Reports over long
-- periods and budget utilisation read these instead of the raw events. A materialized view
-- aggregates each inserted block; SummingMergeTree folds the partial sums on merge, so readers
-- still sum() by key. The deduplication window lets an insert the sink retries (same token)
-- be dropped here too, not counted twice (deduplicate_blocks_in_dependent_materialized_views).
CREATE TABLE IF NOT EXISTS usage_by_minute
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
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (scope, bucket, provider, model)
TTL bucket + INTERVAL 35 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_minute_mv TO usage_by_minute AS
SELECT arrayJoin(arrayConcat(
           ['global', 'org:' || org, 'team:' || org || '/' || team, 'agent:' || agent, 'model:' || model],
           if(ifNull(user, '') = '', [], ['user:' || assumeNotNull(user)]),
           arrayMap((k, v) -> 'tag:' || k || '=' || v, mapKeys(tags), mapValues(tags)))) AS scope,
       toStartOfMinute(event_time) AS bucket, provider, model,
       count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_micro_usd) AS cost_micro_usd
FROM usage_events
GROUP BY scope, bucket, provider, model;
