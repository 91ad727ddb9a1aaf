-- Cluster variant of ../013_autopilot_decisions.sql: see README.md in this folder.

CREATE TABLE IF NOT EXISTS autopilot_decisions_local ON CLUSTER '{cluster}'
(
    decision_id      String,
    revision         UInt32,
    kind             LowCardinality(String),
    status           LowCardinality(String),
    budget_id        String,
    scope            String,
    metric           LowCardinality(String),
    old_limit        Int64,
    new_limit        Int64,
    base_limit       Int64,
    reason           String,
    trigger          String,
    mode             LowCardinality(String),
    decided_at       DateTime64(3, 'UTC'),
    window_start     Nullable(DateTime64(3, 'UTC')),
    window_end       Nullable(DateTime64(3, 'UTC')),
    expires_at       Nullable(DateTime64(3, 'UTC')),
    forecast_projected Nullable(Int64),
    forecast_eta_p50 Nullable(DateTime64(3, 'UTC')),
    forecast_burn_rate_per_hour Nullable(Float64),
    budget_updated_at Nullable(DateTime64(3, 'UTC')),
    approved_by      String,
    approved_at      Nullable(DateTime64(3, 'UTC')),
    signed           Bool,
    kafka_partition  UInt32,
    kafka_offset     UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/autopilot_decisions', '{replica}')
ORDER BY (budget_id, decision_id, kafka_partition, kafka_offset);

CREATE TABLE IF NOT EXISTS autopilot_decisions ON CLUSTER '{cluster}' AS autopilot_decisions_local
ENGINE = Distributed('{cluster}', currentDatabase(), autopilot_decisions_local, kafka_partition);

CREATE VIEW IF NOT EXISTS autopilot_log ON CLUSTER '{cluster}' AS
SELECT * EXCEPT (kafka_partition, kafka_offset)
FROM autopilot_decisions
ORDER BY decided_at, decision_id, revision
LIMIT 1 BY decision_id, revision;
