"""Metrics exposition: the render function the worker and dashboard call, the sink's metrics and
the notifier's, parsed back with prometheus-client's own parser."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from tokenfuse.observability.metrics import NotifierMetrics, render, render_registry, render_sink, render_worker


def samples(body: bytes) -> dict[str, tuple[str, float]]:
    return {s.name: (family.type, s.value) for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def test_render_exposes_a_counter_mapping_with_counters_and_gauges():
    stats = Counter(events=120, duplicates=3, late_events=2, dlq=1, settled_events=110)
    body, content_type = render({**stats, "lag": 10}, "tokenfuse_worker", gauges=["lag"])
    assert content_type.startswith("text/plain; version=")
    got = samples(body)
    assert got["tokenfuse_worker_events_total"] == ("counter", 120.0)
    assert got["tokenfuse_worker_settled_events_total"] == ("counter", 110.0)
    assert got["tokenfuse_worker_lag"] == ("gauge", 10.0)


def test_keys_that_are_not_metric_names_are_made_valid():
    got = samples(render({"control-changes": 2, "a.b": 1.5}, "tokenfuse_dashboard")[0])
    assert got["tokenfuse_dashboard_control_changes_total"] == ("counter", 2.0)
    assert got["tokenfuse_dashboard_a_b_total"] == ("counter", 1.5)


def test_the_sink_exposes_rows_written_errors_and_lag():
    stats = {"usage": 200, "duplicates": 30, "invalid": 2, "alerts": 1, "control": 2, "budgets": 2,
             "insert_retries": 3, "batches": 4}
    got = samples(render_sink(stats, {"lag_records": 17, "store_delay_seconds": 0.4})[0])
    assert got["tokenfuse_sink_usage_total"] == ("counter", 200.0)
    assert got["tokenfuse_sink_insert_retries_total"] == ("counter", 3.0)
    assert got["tokenfuse_sink_lag_records"] == ("gauge", 17.0)
    assert got["tokenfuse_sink_store_delay_seconds"] == ("gauge", 0.4)


def test_the_notifier_metrics_live_in_a_registry_of_their_own():
    one, two = NotifierMetrics.create(), NotifierMetrics.create()
    one.deliveries.labels("ops").inc()
    one.channel_disabled.labels("ops").set(1)
    body = render_registry(one.registry)[0].decode()
    assert 'tokenfuse_notify_deliveries_total{channel="ops"} 1.0' in body
    assert 'tokenfuse_notify_channel_disabled{channel="ops"} 1.0' in body
    assert two.registry.get_sample_value("tokenfuse_notify_deliveries_total", {"channel": "ops"}) is None


def test_the_worker_exposes_its_counters_and_the_lag_between_ingest_and_settle():
    stats = Counter(events=120, settled_events=100, alerts=2, control_changes=1)
    got = samples(render_worker(stats)[0])
    assert got["tokenfuse_worker_events_total"] == ("counter", 120.0)
    assert got["tokenfuse_worker_control_changes_total"] == ("counter", 1.0)
    assert got["tokenfuse_worker_settle_lag_events"] == ("gauge", 20.0)
