-- Self-reported cost is checked against the price catalog (tokenfuse/usage/pricing.py):
-- cost_micro_usd is what counted (the larger of the two); these keep both figures, and
-- cost_source = 'underreported' marks events whose runtime reported less than the catalog.
-- Rows stored before this migration have NULL / 0 here.
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS reported_cost_micro_usd Nullable(UInt64);
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS catalog_cost_micro_usd UInt64 DEFAULT 0;
