-- Spend per hour, org/team/agent and model, kept by a materialized view: dashboards and reports
-- over long periods read this instead of the raw events.
CREATE TABLE IF NOT EXISTS usage_hourly
(
    hour           DateTime('UTC'),
    org            LowCardinality(String),
    team           LowCardinality(String),
    agent          String,
    model          LowCardinality(String),
    events         UInt64,
    input_tokens   UInt64,
    output_tokens  UInt64,
    cost_micro_usd UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (org, team, agent, model, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT toStartOfHour(event_time) AS hour, org, team, agent, model, count() AS events,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(cost_micro_usd) AS cost_micro_usd
FROM usage_events
GROUP BY hour, org, team, agent, model;
