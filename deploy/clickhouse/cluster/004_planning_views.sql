-- Cluster variant of ../008_planning_views.sql: see README.md in this folder. The views read the
-- Distributed tables, so each node answers over the whole cluster.
-- Views for analysts, the SQL side of `tokenfuse report chargeback` and `tokenfuse budgets
-- recommend` (docs/planning.md shows queries on them). Plain views: nothing is stored, each reads
-- the rollups or the small tables at query time, so a WHERE on scope or day/month is pushed down.

-- Spend per scope key and UTC day (global, org:..., team:o/t, agent:..., user:..., model:..., tag:k=v).
-- (Sums are named in a subquery: ClickHouse would substitute an alias equal to a column name into
-- the other sums.)
CREATE VIEW IF NOT EXISTS spend_daily ON CLUSTER '{cluster}' AS
SELECT scope, day, calls, input AS input_tokens, output AS output_tokens, input + output AS total_tokens,
       cached AS cached_tokens, cost AS cost_micro_usd
FROM
(
    SELECT scope, toDate(bucket) AS day, sum(events) AS calls, sum(input_tokens) AS input,
           sum(output_tokens) AS output, sum(cached_tokens) AS cached, sum(cost_micro_usd) AS cost
    FROM usage_by_day
    GROUP BY scope, day
);

-- Spend per scope key and UTC month, with the cached share of input tokens.
CREATE VIEW IF NOT EXISTS spend_monthly ON CLUSTER '{cluster}' AS
SELECT scope, month, calls, input AS input_tokens, output AS output_tokens, input + output AS total_tokens,
       cached AS cached_tokens, cost AS cost_micro_usd,
       if(input = 0, NULL, round(cached / input, 4)) AS cached_share
FROM
(
    SELECT scope, toStartOfMonth(bucket) AS month, sum(events) AS calls, sum(input_tokens) AS input,
           sum(output_tokens) AS output, sum(cached_tokens) AS cached, sum(cost_micro_usd) AS cost
    FROM usage_by_day
    GROUP BY scope, month
);

-- The budgets in force now: the latest version of each budget, tombstones left out.
CREATE VIEW IF NOT EXISTS budgets_current ON CLUSTER '{cluster}' AS
SELECT budget_id, scope, metric, window, timezone, `limit`, thresholds, description, updated_at
FROM
(
    SELECT * FROM budgets_history
    ORDER BY budget_id, updated_at DESC, kafka_offset DESC
    LIMIT 1 BY budget_id
)
WHERE NOT deleted;

-- Alerts per scope key and UTC month (each alert once, whatever the merges did).
CREATE VIEW IF NOT EXISTS alerts_monthly ON CLUSTER '{cluster}' AS
SELECT scope, toStartOfMonth(created_at) AS month, uniqExact(alert_id) AS alerts
FROM alerts
GROUP BY scope, month;

-- Blocks (kill-switch states 'block') per scope key and UTC month.
CREATE VIEW IF NOT EXISTS blocks_monthly ON CLUSTER '{cluster}' AS
SELECT scope, toStartOfMonth(issued_at) AS month, uniqExact(kafka_partition, kafka_offset) AS blocks
FROM control_changes
WHERE state = 'block'
GROUP BY scope, month;
