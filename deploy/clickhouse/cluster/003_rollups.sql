-- Cluster variant: see README.md in this folder. {cluster}, {shard} and {replica} are server macros.
-- Rollups per shard: each shard's views aggregate the events inserted into its local table;
-- readers sum() through the Distributed tables.

CREATE TABLE IF NOT EXISTS usage_by_minute_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/usage_by_minute', '{replica}')
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (scope, bucket, provider, model)
TTL bucket + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS usage_by_minute ON CLUSTER '{cluster}' AS usage_by_minute_local
ENGINE = Distributed('{cluster}', currentDatabase(), usage_by_minute_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_minute_mv ON CLUSTER '{cluster}' TO usage_by_minute_local AS
SELECT arrayJoin(arrayConcat(
           ['global', 'org:' || org, 'team:' || org || '/' || team, 'agent:' || agent, 'model:' || model],
           if(ifNull(user, '') = '', [], ['user:' || assumeNotNull(user)]),
           arrayMap((k, v) -> 'tag:' || k || '=' || v, mapKeys(tags), mapValues(tags)))) AS scope,
       toStartOfMinute(event_time) AS bucket, provider, model,
       count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_micro_usd) AS cost_micro_usd
FROM usage_events_local
GROUP BY scope, bucket, provider, model;

CREATE TABLE IF NOT EXISTS usage_by_hour_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/usage_by_hour', '{replica}')
PARTITION BY toYYYYMM(bucket)
ORDER BY (scope, bucket, provider, model)
TTL bucket + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS usage_by_hour ON CLUSTER '{cluster}' AS usage_by_hour_local
ENGINE = Distributed('{cluster}', currentDatabase(), usage_by_hour_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_hour_mv ON CLUSTER '{cluster}' TO usage_by_hour_local AS
SELECT scope, toStartOfHour(bucket) AS bucket, provider, model,
       sum(events) AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_micro_usd) AS cost_micro_usd
FROM usage_by_minute_local
GROUP BY scope, bucket, provider, model;

CREATE TABLE IF NOT EXISTS usage_by_day_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/usage_by_day', '{replica}')
PARTITION BY toYear(bucket)
ORDER BY (scope, bucket, provider, model);

CREATE TABLE IF NOT EXISTS usage_by_day ON CLUSTER '{cluster}' AS usage_by_day_local
ENGINE = Distributed('{cluster}', currentDatabase(), usage_by_day_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_day_mv ON CLUSTER '{cluster}' TO usage_by_day_local AS
SELECT scope, toStartOfDay(bucket) AS bucket, provider, model,
       sum(events) AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cached_tokens) AS cached_tokens, sum(cost_micro_usd) AS cost_micro_usd
FROM usage_by_hour_local
GROUP BY scope, bucket, provider, model;
