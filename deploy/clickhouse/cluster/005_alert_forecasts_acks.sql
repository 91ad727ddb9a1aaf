-- Cluster variant of 009_alert_forecasts.sql and 010_alert_acks.sql: see README.md in this folder.
ALTER TABLE alerts_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS eta_p10            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p50            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p90            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS projected          Nullable(Int64),
    ADD COLUMN IF NOT EXISTS burn_rate_per_hour Nullable(Float64),
    ADD COLUMN IF NOT EXISTS factor             Nullable(Float64),
    ADD COLUMN IF NOT EXISTS baseline_per_hour  Nullable(Float64),
    ADD COLUMN IF NOT EXISTS fingerprint        Nullable(String),
    ADD COLUMN IF NOT EXISTS repeats            Nullable(Int32);

ALTER TABLE alerts ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS eta_p10            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p50            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p90            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS projected          Nullable(Int64),
    ADD COLUMN IF NOT EXISTS burn_rate_per_hour Nullable(Float64),
    ADD COLUMN IF NOT EXISTS factor             Nullable(Float64),
    ADD COLUMN IF NOT EXISTS baseline_per_hour  Nullable(Float64),
    ADD COLUMN IF NOT EXISTS fingerprint        Nullable(String),
    ADD COLUMN IF NOT EXISTS repeats            Nullable(Int32);

CREATE TABLE IF NOT EXISTS alert_acks_local ON CLUSTER '{cluster}'
(
    alert_id        String,
    kind            LowCardinality(String),
    scope           String,
    budget_id       Nullable(String),
    expected        Bool,
    until           Nullable(DateTime64(3, 'UTC')),
    reason          String,
    acked_by        String,
    acked_at        DateTime64(3, 'UTC'),
    signed          Bool,
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/alert_acks', '{replica}')
ORDER BY (scope, kafka_partition, kafka_offset);

CREATE TABLE IF NOT EXISTS alert_acks ON CLUSTER '{cluster}' AS alert_acks_local
ENGINE = Distributed('{cluster}', currentDatabase(), alert_acks_local, kafka_partition);
