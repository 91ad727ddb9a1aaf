-- Distinct runs per scope and UTC day, for the chargeback report's runs and cost per run without
-- scanning the month's raw events. Each row holds the set of the day's run ids (64-bit hashes,
-- exact: a collision needs billions of runs) as an aggregate state; a month's runs are the
-- union of its days' sets (uniqExactMerge). Scopes are those of the usage rollups except
-- global. A set union counts nothing twice, so the backfill below, a re-run of it, and a block
-- the sink retries all leave the counts exact.
CREATE TABLE IF NOT EXISTS runs_by_day
(
    scope String,   -- org:, team:, agent:, user:, model:, tag:k=v
    day   Date,
    runs  AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (scope, day)
TTL day + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS runs_by_day_mv TO runs_by_day AS
SELECT arrayJoin(arrayConcat(
           ['org:' || org, 'team:' || org || '/' || team, 'agent:' || agent, 'model:' || model],
           if(ifNull(user, '') = '', [], ['user:' || assumeNotNull(user)]),
           arrayMap((k, v) -> 'tag:' || k || '=' || v, mapKeys(tags), mapValues(tags)))) AS scope,
       toDate(event_time) AS day, uniqExactState(cityHash64(assumeNotNull(run))) AS runs
FROM usage_events
WHERE ifNull(run, '') != ''
GROUP BY scope, day;

INSERT INTO runs_by_day
SELECT arrayJoin(arrayConcat(
           ['org:' || org, 'team:' || org || '/' || team, 'agent:' || agent, 'model:' || model],
           if(ifNull(user, '') = '', [], ['user:' || assumeNotNull(user)]),
           arrayMap((k, v) -> 'tag:' || k || '=' || v, mapKeys(tags), mapValues(tags)))) AS scope,
       toDate(event_time) AS day, uniqExactState(cityHash64(assumeNotNull(run))) AS runs
FROM usage_events
WHERE ifNull(run, '') != ''
GROUP BY scope, day;
