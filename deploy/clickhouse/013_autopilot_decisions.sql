-- The autopilot's audit trail (docs/autopilot.md), from the compacted autopilot topic: every
-- version of every decision (proposed, approved, applied, refused, held), kept by its Kafka
-- position, with what changed, why, the forecast behind it and who approved it.
CREATE TABLE IF NOT EXISTS autopilot_decisions
(
    decision_id      String,
    revision         UInt32,
    kind             LowCardinality(String),   -- raise | shrink | expire | hold
    status           LowCardinality(String),   -- proposed | approved | applied | refused | held
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
    signed           Bool,     -- the signature verified with the sink's budget keys
    kafka_partition  UInt32,
    kafka_offset     UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (budget_id, decision_id, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per decision version (a version re-published after a crash counts once).
CREATE VIEW IF NOT EXISTS autopilot_log AS
SELECT * EXCEPT (kafka_partition, kafka_offset)
FROM autopilot_decisions
ORDER BY decided_at, decision_id, revision
LIMIT 1 BY decision_id, revision;
