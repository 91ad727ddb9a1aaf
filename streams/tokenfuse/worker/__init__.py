"""The Faust worker: usage → validate → dedupe → price → per-scope deltas → windowed totals →
budget thresholds → signed control states and alerts. See app.py for the wiring."""
