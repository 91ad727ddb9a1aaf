-- Threshold and manual alerts. alert_id is deterministic (budget|scope|window|percent), so a
-- replayed alert is stored once (the sink drops alert_ids it already holds).
CREATE TABLE IF NOT EXISTS alerts
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (scope, alert_id)
SETTINGS non_replicated_deduplication_window = 1000;
