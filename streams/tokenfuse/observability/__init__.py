"""Prometheus metrics for every process role: shared definitions and a small way to serve them."""
