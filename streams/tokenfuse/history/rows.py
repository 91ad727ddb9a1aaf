"""Kafka records → ClickHouse rows, one function per table (pure, unit-tested).

Times stay epoch milliseconds: clickhouse-connect writes an int into a DateTime64(3) column as
its millisecond ticks, which is exact and far cheaper than building datetime objects.
Each table also names the identity of a record (`Table.key`), which the store uses to drop
records it already holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenfuse.usage.pricing import PriceCatalog


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[str]
    key_columns: tuple[str, ...]  # a record's identity
    key_type: str  # ClickHouse type of a list of identities, for `{keys:<key_type>}`
    time_column: str | None = None  # bounds the lookup of identities on large tables

    @property
    def key_sql(self) -> str:
        return self.key_columns[0] if len(self.key_columns) == 1 else f"({', '.join(self.key_columns)})"

    def key(self, row: list[Any]) -> Any:
        values = tuple(row[self.columns.index(c)] for c in self.key_columns)
        return values[0] if len(values) == 1 else values


USAGE = Table("usage_events",
              ["event_id", "event_time", "org", "team", "agent", "run", "user", "model", "provider",
               "input_tokens", "output_tokens", "cached_tokens", "cost_micro_usd", "cost_source", "tags",
               "kafka_partition", "kafka_offset", "reported_cost_micro_usd", "catalog_cost_micro_usd"],
              ("event_id",), "Array(String)", time_column="event_time")
ALERTS = Table("alerts",
               ["alert_id", "kind", "scope", "budget_id", "threshold_percent", "action", "metric", "spent",
                "limit", "window_start", "window_end", "event_id", "created_at", "message",
                "eta_p10", "eta_p50", "eta_p90", "projected", "burn_rate_per_hour", "factor", "baseline_per_hour",
                "fingerprint", "repeats"],
               ("alert_id",), "Array(String)")
# Control states and budget versions have no id of their own: their Kafka position is one.
CONTROL = Table("control_changes",
                ["scope", "state", "budget_id", "reason", "metric", "spent", "limit", "window_start", "until",
                 "throttle_delay_ms", "issued_at", "key_id", "signed", "kafka_partition", "kafka_offset"],
                ("kafka_partition", "kafka_offset"), "Array(Tuple(UInt32, UInt64))")
BUDGETS = Table("budgets_history",
                ["budget_id", "deleted", "scope", "metric", "window", "timezone", "limit", "thresholds",
                 "description", "updated_at", "kafka_partition", "kafka_offset"],
                ("kafka_partition", "kafka_offset"), "Array(Tuple(UInt32, UInt64))")
ACKS = Table("alert_acks",
             ["alert_id", "kind", "scope", "budget_id", "expected", "until", "reason", "acked_by", "acked_at",
              "signed", "kafka_partition", "kafka_offset"],
             ("kafka_partition", "kafka_offset"), "Array(Tuple(UInt32, UInt64))")
DECISIONS = Table("autopilot_decisions",
                  ["decision_id", "revision", "kind", "status", "budget_id", "scope", "metric", "old_limit",
                   "new_limit", "base_limit", "reason", "trigger", "mode", "decided_at", "window_start", "window_end",
                   "expires_at", "forecast_projected", "forecast_eta_p50", "forecast_burn_rate_per_hour",
                   "budget_updated_at", "approved_by", "approved_at", "signed", "kafka_partition", "kafka_offset"],
                  ("kafka_partition", "kafka_offset"), "Array(Tuple(UInt32, UInt64))")
TABLES = (USAGE, ALERTS, CONTROL, BUDGETS, ACKS, DECISIONS)
# Alert fields added with forecasts and detectors (Alert.avsc); absent from older records' dicts.
_ALERT_EXTRAS = ("eta_p10", "eta_p50", "eta_p90", "projected", "burn_rate_per_hour", "factor", "baseline_per_hour",
                 "fingerprint", "repeats")


def usage_row(event: dict[str, Any], catalog: PriceCatalog, partition: int, offset: int) -> list[Any]:
    priced = catalog.cost(event)
    return [event["event_id"], event["event_time"], event["org"], event["team"], event["agent"],
            event["run"], event["user"], event["model"], event["provider"], event["input_tokens"],
            event["output_tokens"], event["cached_tokens"], priced.micro_usd, priced.source, event["tags"],
            partition, offset, priced.reported, priced.catalog]


def alert_row(alert: dict[str, Any]) -> list[Any]:
    return [alert["alert_id"], alert["kind"], alert["scope"], alert["budget_id"], alert["threshold_percent"],
            alert["action"], alert["metric"], alert["spent"], alert["limit"], alert["window_start"],
            alert["window_end"], alert["event_id"], alert["created_at"], alert["message"],
            *(alert.get(name) for name in _ALERT_EXTRAS)]


def control_row(state: dict[str, Any], signed: bool, partition: int, offset: int) -> list[Any]:
    return [state["scope"], state["state"], state["budget_id"], state["reason"], state["metric"], state["spent"],
            state["limit"], state["window_start"], state["until"], state["throttle_delay_ms"], state["issued_at"],
            state["key_id"], signed, partition, offset]


def ack_row(ack: dict[str, Any], signed: bool, partition: int, offset: int) -> list[Any]:
    return [ack["alert_id"], ack["kind"], ack["scope"], ack["budget_id"], ack["expected"], ack["until"], ack["reason"],
            ack["acked_by"], ack["acked_at"], signed, partition, offset]


def budget_row(budget: dict[str, Any], partition: int, offset: int, now_ms: int) -> list[Any]:
    if budget.get("deleted"):  # a signed deletion
        return [budget["id"], True, "", "", "", "", 0, "[]", "", budget["updated_at"] or now_ms, partition, offset]
    return [budget["id"], False, budget["scope"], budget["metric"], budget["window"], budget["timezone"],
            budget["limit"], json.dumps(budget["thresholds"]), budget["description"],
            budget["updated_at"] or now_ms, partition, offset]


def decision_row(decision: dict[str, Any], signed: bool, partition: int, offset: int) -> list[Any]:
    """An AutopilotDecision record: its fields in column order (id as decision_id)."""
    return [decision["id"], *(decision[c] for c in DECISIONS.columns[1:-3]), signed, partition, offset]
