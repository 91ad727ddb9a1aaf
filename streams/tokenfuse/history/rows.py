"""Kafka records → ClickHouse rows, one function per table (pure, unit-tested)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from tokenfuse.pricing import PriceCatalog

USAGE_COLUMNS = ["event_id", "event_time", "org", "team", "agent", "run", "user", "model", "provider",
                 "input_tokens", "output_tokens", "cached_tokens", "cost_micro_usd", "cost_source", "tags",
                 "kafka_partition", "kafka_offset"]
ALERT_COLUMNS = ["alert_id", "kind", "scope", "budget_id", "threshold_percent", "action", "metric", "spent",
                 "limit", "window_start", "window_end", "event_id", "created_at", "message"]
CONTROL_COLUMNS = ["scope", "state", "budget_id", "reason", "spent", "limit", "until", "issued_at", "signed",
                   "kafka_partition", "kafka_offset"]
BUDGET_COLUMNS = ["budget_id", "deleted", "scope", "metric", "window", "timezone", "limit", "thresholds",
                  "updated_at", "kafka_offset"]


def ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)


def usage_row(event: dict[str, Any], catalog: PriceCatalog, partition: int, offset: int) -> list[Any]:
    priced = catalog.cost(event)
    return [event["event_id"], ts(event["event_time"]), event["org"], event["team"], event["agent"],
            event["run"], event["user"], event["model"], event["provider"], event["input_tokens"],
            event["output_tokens"], event["cached_tokens"], priced.micro_usd, priced.source, event["tags"],
            partition, offset]


def alert_row(alert: dict[str, Any]) -> list[Any]:
    return [alert["alert_id"], alert["kind"], alert["scope"], alert["budget_id"], alert["threshold_percent"],
            alert["action"], alert["metric"], alert["spent"], alert["limit"], ts(alert["window_start"]),
            ts(alert["window_end"]), alert["event_id"], ts(alert["created_at"]), alert["message"]]


def control_row(state: dict[str, Any], signed: bool, partition: int, offset: int) -> list[Any]:
    return [state["scope"], state["state"], state["budget_id"], state["reason"], state["spent"], state["limit"],
            ts(state["until"]), ts(state["issued_at"]), signed, partition, offset]


def budget_row(budget_id: str, budget: dict[str, Any] | None, offset: int, now_ms: int) -> list[Any]:
    if budget is None:  # a tombstone: the budget was deleted
        return [budget_id, True, "", "", "", "", 0, "[]", ts(now_ms), offset]
    return [budget["id"], False, budget["scope"], budget["metric"], budget["window"], budget["timezone"],
            budget["limit"], json.dumps(budget["thresholds"]), ts(budget["updated_at"] or now_ms), offset]
