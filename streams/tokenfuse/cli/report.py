"""`tokenfuse report ...`: spend, top spenders, budget utilisation, models, alerts from ClickHouse;
chargeback in cli/chargeback.py."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="reports from the ClickHouse history (spend, top, utilisation, ...)")
    reports = p.add_subparsers(dest="report", metavar="REPORT", required=True)

    def add(name: str, help: str, period: bool = True) -> argparse.ArgumentParser:
        r = reports.add_parser(name, help=help)
        if period:
            r.add_argument("--since", help="a duration back from now: 30m, 24h, 7d (default 24h)")
            r.add_argument("--from", dest="start", help="ISO start time, UTC unless it has an offset")
            r.add_argument("--to", dest="end", help="ISO end time (default now)")
        r.add_argument("--format", choices=["table", "csv", "json"], default="table")
        r.set_defaults(handler=run)
        return r

    r = add("spend", "spend per scope over a period")
    r.add_argument("--scope", help="agent:bot-1, team:acme/*, a kind (agent), or global; default every scope")
    r.add_argument("--every", choices=["hour", "day"], help="one row per scope and hour/day")
    r = add("top", "the scopes of one kind that spent most")
    r.add_argument("--kind", default="agent", help="org, team, agent, run, user, model or tag (default agent)")
    r.add_argument("--metric", default="cost_micro_usd",
                   help="cost_micro_usd (default), total_tokens, input_tokens, output_tokens, events")
    r.add_argument("--limit", type=int, default=10)
    r = add("utilisation", "spend against limit of every budget in its current window", period=False)
    r.add_argument("--at", help="ISO time whose windows to show (default now)")
    r.add_argument("--per-budget", type=int, default=10, help="scope values shown per '*' budget")
    r = add("models", "spend per provider and model")
    r.add_argument("--scope", help="restrict to one scope, e.g. team:acme/search")
    r = add("alerts", "the alerts log, newest first")
    r.add_argument("--scope", help="one scope or a pattern like agent:*")
    r.add_argument("--limit", type=int, default=100)
    from tokenfuse.cli import chargeback

    chargeback.register(reports)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.cli.sql import print_result
    from tokenfuse.config import Settings
    from tokenfuse.history import reports
    from tokenfuse.history.sql import sql_runner

    if getattr(args, "limit", 1) < 1 or getattr(args, "per_budget", 1) < 1:
        raise reports.ReportError("--limit and --per-budget must be at least 1")
    settings = Settings.from_env()
    period = None if args.report == "utilisation" else reports.Period.parse(args.since, args.start, args.end)
    with sql_runner(settings) as sql:
        if args.report == "spend":
            result = reports.spend(sql, period, args.scope, args.every)
        elif args.report == "top":
            result = reports.top(sql, period, args.kind, args.metric, args.limit)
        elif args.report == "models":
            result = reports.models(sql, period, args.scope)
        elif args.report == "alerts":
            result = reports.alerts(sql, period, args.scope, args.limit)
        else:
            at = reports.parse_time(args.at, "--at") if args.at else None
            result = reports.utilisation(sql, at, args.per_budget)
    print_result(result["columns"], result["rows"], args.format)
    return 0
