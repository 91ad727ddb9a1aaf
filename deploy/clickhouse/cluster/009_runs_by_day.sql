-- Cluster variant of ../014_runs_by_day.sql: see README.md in this folder. Backfill on a cluster
-- by running the INSERT of the single-node file against runs_by_day_local on each shard.

CREATE TABLE IF NOT EXISTS runs_by_day_local ON CLUSTER '{cluster}'
(
    scope String,
    day   Date,
    runs  AggregateFunction(uniqExact, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/runs_by_day', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (scope, day)
TTL day + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS runs_by_day ON CLUSTER '{cluster}' AS runs_by_day_local
ENGINE = Distributed('{cluster}', currentDatabase(), runs_by_day_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS runs_by_day_mv ON CLUSTER '{cluster}' TO runs_by_day_local AS
SELECT arrayJoin(arrayConcat(
           ['org:' || org, 'team:' || org || '/' || team, 'agent:' || agent, 'model:' || model],
           if(ifNull(user, '') = '', [], ['user:' || assumeNotNull(user)]),
           arrayMap((k, v) -> 'tag:' || k || '=' || v, mapKeys(tags), mapValues(tags)))) AS scope,
       toDate(event_time) AS day, uniqExactState(cityHash64(assumeNotNull(run))) AS runs
FROM usage_events_local
WHERE ifNull(run, '') != ''
GROUP BY scope, day;
