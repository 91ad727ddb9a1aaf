"""`tokenfuse sql "SELECT ..."`: ad-hoc read-only SQL on the history (works while the sink runs)."""

from __future__ import annotations

import argparse
import csv
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sql", help="run a read-only SQL query on the ClickHouse history")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.config import Settings
    from tokenfuse.history.sql import run_sql

    result = run_sql(Settings.from_env(), args.query)
    print_result(result["columns"], result["rows"], args.format)
    return 0


def print_result(columns: list[str], rows: list[list], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(columns, row)) for row in rows], default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif not rows:
        print("(no rows)", file=sys.stderr)
    else:
        cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        for n, row in enumerate(cells):
            print("  ".join(v.rjust(w) if n and v.replace(".", "", 1).lstrip("-").isdigit() else v.ljust(w)
                            for v, w in zip(row, widths)).rstrip())
            if n == 0:
                print("  ".join("-" * w for w in widths))
