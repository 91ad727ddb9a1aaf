-- Cluster variant of ../011_agents_by_hour.sql: see README.md in this folder.

CREATE TABLE IF NOT EXISTS agents_by_hour_local ON CLUSTER '{cluster}'
(
    scope          String,
    bucket         DateTime('UTC'),
    agent          String,
    events         UInt64,
    input_tokens   UInt64,
    output_tokens  UInt64,
    cost_micro_usd UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/agents_by_hour', '{replica}')
PARTITION BY toYYYYMM(bucket)
ORDER BY (scope, bucket, agent)
TTL bucket + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS agents_by_hour ON CLUSTER '{cluster}' AS agents_by_hour_local
ENGINE = Distributed('{cluster}', currentDatabase(), agents_by_hour_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS agents_by_hour_mv ON CLUSTER '{cluster}' TO agents_by_hour_local AS
SELECT arrayJoin(['org:' || org, 'team:' || org || '/' || team]) AS scope, toStartOfHour(event_time) AS bucket, agent,
       count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_micro_usd) AS cost_micro_usd
FROM usage_events_local
GROUP BY scope, bucket, agent;
