-- Which agents spend under each org and team, per hour: the dashboard's "top agents" of an org or
-- a team without scanning the raw events (the per-scope rollups 005-007 know a scope and a model,
-- not which team an agent works for). Two rows per event before aggregation, then a few rows per
-- agent and hour. Fed from the migration on (no backfill: a partly applied backfill re-run would
-- count twice); older periods show no agents. The deduplication window drops a retried insert
-- here too, like the other rollups.
CREATE TABLE IF NOT EXISTS agents_by_hour
(
    scope          String,   -- org:<org> or team:<org>/<team>
    bucket         DateTime('UTC'),
    agent          String,
    events         UInt64,
    input_tokens   UInt64,
    output_tokens  UInt64,
    cost_micro_usd UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (scope, bucket, agent)
TTL bucket + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agents_by_hour_mv TO agents_by_hour AS
SELECT arrayJoin(['org:' || org, 'team:' || org || '/' || team]) AS scope, toStartOfHour(event_time) AS bucket, agent,
       count() AS events, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_micro_usd) AS cost_micro_usd
FROM usage_events
GROUP BY scope, bucket, agent;
