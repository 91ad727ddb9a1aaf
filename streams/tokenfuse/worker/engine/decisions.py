"""Turn a window's totals into alerts and a scope's enforcement entry (pure, unit-tested)."""

from __future__ import annotations

from typing import Any

from tokenfuse.worker.engine.rules import DEFAULT_THROTTLE_DELAY_MS, ActiveBudget, enforcement, reached
from tokenfuse.worker.engine.record import Window, metric


def alert_for(budget: ActiveBudget, scope: str, threshold: dict[str, Any], spent: int, window: Window,
              event_id: str, now_ms: int) -> dict[str, Any]:
    b = budget.budget
    return {
        # Deterministic id: a replay after a crash produces the same alert id, so history dedupes.
        "alert_id": f"{b['id']}|{scope}|{window.start}|{threshold['percent']}",
        "kind": "threshold", "scope": scope, "budget_id": b["id"],
        "threshold_percent": threshold["percent"], "action": threshold["action"],
        "metric": b["metric"], "spent": spent, "limit": b["limit"],
        "window_start": window.start, "window_end": window.end, "event_id": event_id, "created_at": now_ms,
        "message": f"{scope} reached {threshold['percent']}% of budget {b['id']} "
                   f"({spent} of {b['limit']} {b['metric']}, window {b['window']})",
    }


def evaluate(budget: ActiveBudget, scope: str, window: Window, record: dict[str, Any], event_id: str,
             now_ms: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Alerts for thresholds newly crossed and the enforcement entry this budget asks for.

    Each threshold fires once per budget, scope and window: record["f"][budget id] remembers the
    highest percent fired in each window the record still keeps (around a window boundary,
    out-of-order usage goes back and forth between two windows). A rolling window has no discrete
    windows: a threshold re-arms once spend falls back below it."""
    b = budget.budget
    spent = metric(window.totals, b["metric"])
    rolling = budget.window.kind == "rolling"
    fired_by_window = record["f"].setdefault(b["id"], {})
    key = "rolling" if rolling else str(window.start)
    fired = fired_by_window.get(key, 0)
    hit = reached(b, spent)
    top = hit[-1]["percent"] if hit else 0
    crossed = [t for t in hit if t["percent"] > fired]
    if crossed or (rolling and top < fired):
        fired_by_window[key] = top
        if not rolling:  # forget windows the record no longer keeps: no usage reaches them
            kept = {str(w[0]) for w in record["w"].get(budget.window.name, ())} | {key}
            for old in set(fired_by_window) - kept:
                del fired_by_window[old]
    alerts = [alert_for(budget, scope, t, spent, window, event_id, now_ms) for t in crossed]
    until = window.end + budget.window.size_ms if rolling else window.end
    entry = {
        "state": enforcement(b, spent), "budget_id": b["id"], "metric": b["metric"], "spent": spent,
        "limit": b["limit"], "window_start": window.start, "until": until,
        "reason": f"budget {b['id']}: {spent} of {b['limit']} {b['metric']} in window {b['window']}",
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
