"""One line per budget the autopilot touched, for `tokenfuse budgets list`: a raise in force
(until when, from which base), the newest proposal waiting for approval, a hold."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from tokenfuse.autopilot.book import Book, Decision

COLUMNS = ("budget", "autopilot", "decision", "why")


def _at(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ms else "-"


def summary_rows(budgets: Mapping[str, Mapping[str, Any]], decisions: Mapping[str, Decision],
                 now_ms: int) -> list[tuple[str, str, str, str]]:
    book = Book(budgets={k: dict(v) for k, v in budgets.items()})
    for decision in decisions.values():
        book.merge_decision(decision)
    rows = []
    for budget_id in sorted(budgets):
        mine, waiting = book.published(budget_id), [d for d in book.of(budget_id) if d.status == "proposed"]
        hold = book.hold(budget_id, now_ms)
        if mine is not None and mine.kind == "raise":
            until = f"until {_at(mine.expires_at)}" if mine.expires_at else "(stays)"
            rows.append((budget_id, f"raised {mine.base_limit:,} -> {mine.new_limit:,} {until}", mine.id, mine.reason))
        elif mine is not None:
            rows.append((budget_id, f"{mine.kind} {mine.old_limit:,} -> {mine.new_limit:,}", mine.id, mine.reason))
        if waiting:
            last = waiting[-1]
            state = "waits for approval" if last.mode == "approve" else "dry-run proposal"
            rows.append((budget_id, f"{last.kind} {last.old_limit:,} -> {last.new_limit:,} {state}", last.id,
                         last.reason))
        if hold is not None:
            rows.append((budget_id, f"held until {_at(hold.window_end)}", hold.id, hold.reason))
    return rows
