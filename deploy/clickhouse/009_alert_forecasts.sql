-- Forecast, forecast_cleared, loop and spike alerts (docs/forecasts.md): the ETA and its band,
-- the projected spend, rates, and the repeated request's fingerprint. Older alerts keep NULLs.
ALTER TABLE alerts
    ADD COLUMN IF NOT EXISTS eta_p10            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p50            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS eta_p90            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS projected          Nullable(Int64),
    ADD COLUMN IF NOT EXISTS burn_rate_per_hour Nullable(Float64),
    ADD COLUMN IF NOT EXISTS factor             Nullable(Float64),
    ADD COLUMN IF NOT EXISTS baseline_per_hour  Nullable(Float64),
    ADD COLUMN IF NOT EXISTS fingerprint        Nullable(String),
    ADD COLUMN IF NOT EXISTS repeats            Nullable(Int32);
