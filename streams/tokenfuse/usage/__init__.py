"""What a usage event is and counts toward, shared by the worker and the sink: scopes, windows,
prices, validation."""
