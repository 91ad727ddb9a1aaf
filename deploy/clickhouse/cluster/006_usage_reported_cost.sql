-- Cluster variant of 011_usage_reported_cost.sql: the columns on every local table, then on the
-- Distributed table that reads them.
ALTER TABLE usage_events_local ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS reported_cost_micro_usd Nullable(UInt64);
ALTER TABLE usage_events_local ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS catalog_cost_micro_usd UInt64 DEFAULT 0;
ALTER TABLE usage_events ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS reported_cost_micro_usd Nullable(UInt64);
ALTER TABLE usage_events ON CLUSTER '{cluster}' ADD COLUMN IF NOT EXISTS catalog_cost_micro_usd UInt64 DEFAULT 0;
