"""Turn a window's totals into alerts and a scope's enforcement entries (pure, unit-tested)."""

from __future__ import annotations

from typing import Any

from tokenfuse.worker.engine import ActiveBudget, DEFAULT_THROTTLE_DELAY_MS, enforcement, new_crossings
from tokenfuse.worker.totals import Totals


def alert_for(budget: ActiveBudget, scope: str, threshold: dict[str, Any], spent: int,
              start_ms: int, end_ms: int, event_id: str, now_ms: int) -> dict[str, Any]:
    b = budget.budget
    return {
        # Deterministic id: a replay after a crash produces the same alert id, so history dedupes.
        "alert_id": f"{b['id']}|{scope}|{start_ms}|{threshold['percent']}",
        "kind": "threshold", "scope": scope, "budget_id": b["id"],
        "threshold_percent": threshold["percent"], "action": threshold["action"],
        "metric": b["metric"], "spent": spent, "limit": b["limit"],
        "window_start": start_ms, "window_end": end_ms, "event_id": event_id, "created_at": now_ms,
        "message": f"{scope} reached {threshold['percent']}% of budget {b['id']} "
                   f"({spent} of {b['limit']} {b['metric']}, window {b['window']})",
    }


def evaluate(budget: ActiveBudget, scope: str, totals: Totals, start_ms: int, end_ms: int,
             event_id: str, now_ms: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Alerts for thresholds newly crossed (recorded in totals.fired, so each fires once per
    budget, scope and window) and the enforcement entry this budget asks for on this scope."""
    spent = totals.metric(budget.budget["metric"])
    fired = totals.fired.get(budget.id, 0)
    crossed = new_crossings(budget.budget, spent, fired)
    if crossed:
        totals.fired[budget.id] = crossed[-1]["percent"]
    alerts = [alert_for(budget, scope, t, spent, start_ms, end_ms, event_id, now_ms) for t in crossed]
    state = enforcement(budget.budget, spent)
    entry = {
        "state": state, "budget_id": budget.id, "metric": budget.budget["metric"], "spent": spent,
        "limit": budget.budget["limit"], "window_start": start_ms, "until": end_ms,
        "reason": f"budget {budget.id}: {spent} of {budget.budget['limit']} {budget.budget['metric']} "
                  f"in window {budget.budget['window']}",
    }
    return alerts, entry


def control_state(scope: str, entry: dict[str, Any] | None, now_ms: int) -> dict[str, Any]:
    """The ControlState record (unsigned) for a scope's effective entry; None means allow."""
    if entry is None:
        return {"scope": scope, "state": "allow", "reason": "within budget", "issued_at": now_ms}
    return {
        "scope": scope, "state": entry["state"], "budget_id": entry["budget_id"], "reason": entry["reason"],
        "metric": entry["metric"], "spent": entry["spent"], "limit": entry["limit"],
        "window_start": entry["window_start"], "until": entry["until"],
        "throttle_delay_ms": DEFAULT_THROTTLE_DELAY_MS if entry["state"] == "throttle" else None,
        "issued_at": now_ms,
    }
