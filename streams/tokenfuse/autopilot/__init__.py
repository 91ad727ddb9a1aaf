"""The autopilot: bounded, audited budget adjustments from the worker's forecasts (docs/autopilot.md)."""
