"""`tokenfuse budgets validate|apply|list|delete|recommend`: budgets as code on the compacted budgets
topic (recommend: cli/recommend.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tokenfuse.budgets.spec import load_budgets
from tokenfuse.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("budgets", help="validate, apply, list or delete budgets")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser("validate", help="check a budgets file, change nothing")
    validate.add_argument("file", type=Path)
    validate.set_defaults(handler=run_validate)
    apply = actions.add_parser("apply", help="publish a budgets file; budgets absent from it are deleted")
    apply.add_argument("file", type=Path)
    apply.add_argument("--dry-run", action="store_true", help="show what would change, publish nothing")
    apply.add_argument("--no-prune", action="store_true", help="keep budgets that are absent from the file")
    apply.set_defaults(handler=run_apply)
    listing = actions.add_parser("list", help="show the budgets in force")
    listing.set_defaults(handler=run_list)
    delete = actions.add_parser("delete", help="delete one budget by id")
    delete.add_argument("id")
    delete.set_defaults(handler=run_delete)
    from tokenfuse.cli import recommend

    recommend.register(actions)


def run_validate(args: argparse.Namespace) -> int:
    budgets = load_budgets(args.file)
    print(f"{args.file}: {len(budgets)} budget(s) OK")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from tokenfuse.budgets.store import plan_apply, publish, read_budgets

    from tokenfuse.config.roles import settings_for

    wanted = load_budgets(args.file)
    settings = Settings.from_env() if args.dry_run else settings_for("budget operator")
    key_id = settings.budget_signer().key_id if settings.budget_keys else None
    plan = plan_apply(read_budgets(settings), wanted, prune=not args.no_prune, key_id=key_id)
    if not args.dry_run:
        publish(settings, plan.puts, plan.deleted)
    verb = "would be " if args.dry_run else ""
    for label, ids in (("created", plan.created), ("changed", plan.changed),
                       ("unchanged", plan.unchanged), ("deleted", plan.deleted)):
        for budget_id in ids:
            print(f"{budget_id}: {verb}{label}")
    print(f"{len(plan.created)} {verb}created, {len(plan.changed)} {verb}changed, "
          f"{len(plan.unchanged)} unchanged, {len(plan.deleted)} {verb}deleted")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from tokenfuse.budgets.store import read_budgets

    settings = Settings.from_env()
    budgets = sorted(read_budgets(settings).values(), key=lambda b: b["id"])
    print(format_table(budgets) if budgets else "no budgets")
    if budgets:
        print_autopilot(settings, {b["id"]: b for b in budgets})
        print_current_spend(settings, {b["id"]: b for b in budgets})
    return 0


def print_autopilot(settings: Settings, budgets: dict[str, dict[str, Any]]) -> None:
    """What the autopilot did to these budgets (raises in force, proposals, holds), if anything."""
    import time

    from tokenfuse.autopilot.records import read_decisions
    from tokenfuse.autopilot.summary import COLUMNS as AUTOPILOT_COLUMNS, summary_rows
    from tokenfuse.cli.sql import print_result

    rows = summary_rows(budgets, read_decisions(settings), int(time.time() * 1000))
    if rows:
        print("\nautopilot (`tokenfuse autopilot log` for the audit trail):")
        print_result(list(AUTOPILOT_COLUMNS), [list(r) for r in rows], "table")


def print_current_spend(settings: Settings, budgets: dict[str, dict[str, Any]]) -> None:
    """Spend and % used per budget and scope in the current windows, from the ClickHouse history
    (the same query as `tokenfuse report utilisation`), with the burn rate, the ETA of the limit
    and the spend projected at the window's end; one line if the history is not there."""
    from tokenfuse.cli.sql import print_result
    from tokenfuse.errors import TokenfuseError
    from tokenfuse.history import reports
    from tokenfuse.history.forecasts import with_forecasts
    from tokenfuse.history.sql import sql_runner

    try:
        with sql_runner(settings) as sql:
            result = with_forecasts(sql, reports.utilisation(sql), budgets)
    except TokenfuseError as exc:
        print(f"\ncurrent spend: not available ({exc})")
        return
    print("\ncurrent spend (ClickHouse history, current windows):")
    print_result(result["columns"], result["rows"], "table")


def run_delete(args: argparse.Namespace) -> int:
    from tokenfuse.budgets.store import delete_budget

    from tokenfuse.config.roles import settings_for

    delete_budget(settings_for("budget operator"), args.id)
    print(f"{args.id}: deleted")
    return 0


# The columns of `budgets list`; current spend and % used follow in a second table.
COLUMNS = ("id", "scope", "metric", "window", "limit", "thresholds")


def budget_row(budget: dict[str, Any]) -> tuple[str, ...]:
    window = budget["window"]
    if window in ("day", "month") and budget["timezone"] != "UTC":
        window += f"@{budget['timezone']}"
    thresholds = ",".join(f"{t['percent']}%{t['action']}" for t in budget["thresholds"])
    return (budget["id"], budget["scope"], budget["metric"], window, f"{budget['limit']:,}", thresholds)


def format_table(budgets: list[dict[str, Any]]) -> str:
    rows = [COLUMNS] + [budget_row(b) for b in budgets]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
