-- Cluster variant: see README.md in this folder. {cluster}, {shard} and {replica} are server macros.
CREATE TABLE IF NOT EXISTS alerts_local ON CLUSTER '{cluster}'
(
    alert_id          String,
    kind              LowCardinality(String),
    scope             String,
    budget_id         Nullable(String),
    threshold_percent Nullable(Int32),
    action            LowCardinality(String),
    metric            Nullable(String),
    spent             Nullable(Int64),
    limit             Nullable(Int64),
    window_start      Nullable(DateTime64(3, 'UTC')),
    window_end        Nullable(DateTime64(3, 'UTC')),
    event_id          Nullable(String),
    created_at        DateTime64(3, 'UTC'),
    message           String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/alerts', '{replica}')
PARTITION BY toYYYYMM(created_at)
ORDER BY (scope, alert_id);

CREATE TABLE IF NOT EXISTS alerts ON CLUSTER '{cluster}' AS alerts_local
ENGINE = Distributed('{cluster}', currentDatabase(), alerts_local, cityHash64(alert_id));

CREATE TABLE IF NOT EXISTS control_changes_local ON CLUSTER '{cluster}'
(
    scope             String,
    state             LowCardinality(String),
    budget_id         Nullable(String),
    reason            String,
    metric            Nullable(String),
    spent             Nullable(Int64),
    limit             Nullable(Int64),
    window_start      Nullable(DateTime64(3, 'UTC')),
    until             Nullable(DateTime64(3, 'UTC')),
    throttle_delay_ms Nullable(Int32),
    issued_at         DateTime64(3, 'UTC'),
    key_id            String,
    signed            Bool,     -- the signature verified with the sink's key
    kafka_partition   UInt32,
    kafka_offset      UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/control_changes', '{replica}')
PARTITION BY toYYYYMM(issued_at)
ORDER BY (scope, issued_at, kafka_partition, kafka_offset);

CREATE TABLE IF NOT EXISTS control_changes ON CLUSTER '{cluster}' AS control_changes_local
ENGINE = Distributed('{cluster}', currentDatabase(), control_changes_local, kafka_partition);

CREATE TABLE IF NOT EXISTS budgets_history_local ON CLUSTER '{cluster}'
(
    budget_id       String,
    deleted         Bool,
    scope           String,
    metric          LowCardinality(String),
    window          String,
    timezone        String,
    limit           Int64,
    thresholds      String,   -- JSON: [{"percent": 80, "action": "alert"}, ...]
    description     String,
    updated_at      DateTime64(3, 'UTC'),
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/budgets_history', '{replica}')
ORDER BY (budget_id, kafka_partition, kafka_offset);

CREATE TABLE IF NOT EXISTS budgets_history ON CLUSTER '{cluster}' AS budgets_history_local
ENGINE = Distributed('{cluster}', currentDatabase(), budgets_history_local, kafka_partition);
