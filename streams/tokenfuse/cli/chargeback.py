"""`tokenfuse report chargeback`: the accountability report as a table, CSV, JSON or Markdown, and
one Markdown summary per group for mailing or posting (docs/planning.md)."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenfuse.history.chargeback import Report, Row

# Machine formats (csv, json): integer micro-USD, so they add up to the total exactly.
COLUMNS = ["group", "budget_id", "budget_micro_usd", "direct_micro_usd", "shared_micro_usd", "charged_micro_usd",
           "forecast_micro_usd", "variance_micro_usd", "variance_percent", "calls", "input_tokens", "output_tokens",
           "cached_share", "runs", "cost_per_run_micro_usd", "alerts", "blocks"]
# Human formats (table, markdown): USD.
HUMAN = ["group", "budget", "actual", "shared", "charged", "forecast", "variance", "calls", "tokens",
         "cached", "runs", "per run", "alerts", "blocks"]
UNALLOCATED = "(unallocated)"


def register(reports: argparse._SubParsersAction) -> None:
    r = reports.add_parser("chargeback", help="per team (org, agent, ...): budget vs actual vs forecast, shared cost")
    r.add_argument("--period", required=True, help="a calendar month (UTC): 2026-11")
    r.add_argument("--by", default="team", help="team (default), org, agent, user, model or tag:KEY")
    r.add_argument("--shared", action="append", default=[], metavar="GROUP",
                   help="a group whose cost is shared (repeatable), or 'untagged' for usage no group holds")
    r.add_argument("--allocate", default="proportional", help="how --shared cost is split: even or proportional")
    r.add_argument("--shared-config", type=Path, help="a YAML file of shared-cost rules (also fixed amounts)")
    r.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    r.add_argument("--markdown-dir", type=Path, help="also write one Markdown summary per group into this folder")
    r.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.config import Settings
    from tokenfuse.history.chargeback import Grouping, Month, chargeback
    from tokenfuse.history.reports import ReportError
    from tokenfuse.history.shared_cost import check, load_rules, rules_from_flags
    from tokenfuse.history.sql import sql_runner

    if args.shared_config and args.shared:
        raise ReportError("give shared cost by --shared or by --shared-config, not both")
    month = Month.parse(args.period, int(time.time() * 1000))
    grouping = Grouping.parse(args.by)
    rules = load_rules(args.shared_config) if args.shared_config else rules_from_flags(args.shared, args.allocate)
    check(rules, grouping.prefix, grouping.name)  # before ClickHouse is opened
    with sql_runner(Settings.from_env()) as sql:
        report = chargeback(sql, month, grouping, rules)
    if args.markdown_dir:
        write_summaries(report, args.markdown_dir)
    print_report(report, args.format)
    return 0


def machine_rows(report: Report) -> list[list[Any]]:
    rows = [[r.group, r.budget_id, r.budget, r.direct, r.shared, r.charged, r.forecast, r.variance,
             r.variance_percent, r.calls, r.input_tokens, r.output_tokens, r.cached_share, r.runs, r.cost_per_run,
             r.alerts, r.blocks] for r in report.rows]
    if report.unallocated:
        rows.append([UNALLOCATED, "", None, 0, report.unallocated, report.unallocated] + [None] * 11)
    return rows


def human_rows(report: Report) -> list[list[str]]:
    rows = [[r.group, usd(r.budget), usd(r.direct), usd(r.shared), usd(r.charged), usd(r.forecast),
             "" if r.variance is None else f"{usd(r.variance)} ({r.variance_percent:+g}%)", f"{r.calls:,}",
             f"{r.input_tokens + r.output_tokens:,}", "" if r.cached_share is None else f"{100 * r.cached_share:.1f}%",
             f"{r.runs:,}", usd(r.cost_per_run), str(r.alerts), str(r.blocks)] for r in report.rows]
    if report.unallocated:
        rows.append([UNALLOCATED, "", "", usd(report.unallocated), usd(report.unallocated)] + [""] * 9)
    rows.append(["total", "", usd(sum(r.direct for r in report.rows)), "",
                 usd(sum(r.charged for r in report.rows) + report.unallocated)] + [""] * 9)
    return rows


def usd(micro: int | None) -> str:
    if micro is None:
        return ""
    return f"{'-' if micro < 0 else ''}{abs(Decimal(micro)) / 10**6:,.2f}"


def heading(report: Report) -> str:
    state = "month to date, forecast to month end" if report.month.current else "closed month"
    return (f"chargeback {report.month.label} by {report.grouping.name} ({state}); "
            f"ClickHouse total {usd(report.total)} USD")


def print_report(report: Report, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps({"period": report.month.label, "by": report.grouping.name, "total_micro_usd": report.total,
                          "unallocated_micro_usd": report.unallocated, "notes": report.allocation.notes,
                          "rows": [dict(zip(COLUMNS, row)) for row in machine_rows(report)]}))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(COLUMNS)
        writer.writerows(machine_rows(report))
    elif fmt == "markdown":
        print(f"**{heading(report)}**\n")
        print(markdown_table(HUMAN, human_rows(report)))
    else:
        print(heading(report))
        rows = [HUMAN] + human_rows(report)
        widths = [max(len(r[i]) for r in rows) for i in range(len(HUMAN))]
        for n, row in enumerate(rows):
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                print("  ".join("-" * w for w in widths))
    for note in report.allocation.notes:
        print(f"note: {note}", file=sys.stderr)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_summaries(report: Report, folder: Path) -> list[Path]:
    """One Markdown file per group (not the untagged rest), named after the group."""
    from tokenfuse.history.reports import ReportError
    from tokenfuse.history.shared_cost import UNTAGGED

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--markdown-dir: cannot create {folder}: {exc.strerror}") from None
    written = []
    for row in report.rows:
        if row.group == UNTAGGED:
            continue
        path = folder / (re.sub(r"[^A-Za-z0-9._-]+", "_", row.group) + ".md")
        path.write_text(summary(report, row))
        written.append(path)
    return written


def summary(report: Report, row: Row) -> str:
    month = report.month
    lines = [f"# {row.group}: spend in {month.label}", ""]
    if month.current:
        lines.append(f"Month to date (as of {time.strftime('%Y-%m-%d %H:%M', time.gmtime(month.now_ms / 1000))} UTC).")
        lines.append("")
    budget = f"{usd(row.budget)} USD (budget `{row.budget_id}`)" if row.budget is not None else "no cost budget"
    lines += [f"- **Budget for the month:** {budget}",
              f"- **Actual (own usage):** {usd(row.direct)} USD",
              f"- **Shared cost {'received' if row.shared >= 0 else 'passed on'}:** {usd(row.shared)} USD",
              f"- **Charged:** {usd(row.charged)} USD",
              f"- **Forecast to month end:** {usd(row.forecast)} USD"]
    if row.variance is not None:
        verdict = "over" if row.variance > 0 else "under"
        lines.append(f"- **Variance:** {usd(abs(row.variance))} USD {verdict} budget ({row.variance_percent:+g}%)")
    lines += [f"- **Calls:** {row.calls:,}; **runs:** {row.runs:,}; **cost per run:** "
              f"{'n/a' if row.cost_per_run is None else usd(row.cost_per_run) + ' USD'}",
              f"- **Tokens:** {row.input_tokens:,} in, {row.output_tokens:,} out; cached share of input: "
              f"{'n/a' if row.cached_share is None else f'{100 * row.cached_share:.1f}%'}",
              f"- **Alerts:** {row.alerts}; **blocks:** {row.blocks}", ""]
    if row.models:
        lines += ["| model | cost (USD) |", "|---|---|"]
        lines += [f"| {model} | {usd(cost)} |" for model, cost in sorted(row.models.items(), key=lambda m: -m[1])[:10]]
        lines.append("")
    return "\n".join(lines)
