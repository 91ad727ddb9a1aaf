"""The budget engine: plain Python, no Faust. Deltas, scope records with their windows, budget
rules and the settling of a scope. Unit-tested alone."""
