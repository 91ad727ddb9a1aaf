"""`tokenfuse autopilot run POLICY | approve ID | log`: bounded budget adjustments (docs/autopilot.md)."""

from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path

LOG_COLUMNS = ("decided_at", "decision_id", "budget_id", "kind", "status", "old_limit", "new_limit", "approved_by", "reason")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autopilot", help="adjust budgets within a policy's bounds; approve and audit its changes")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_p = actions.add_parser("run", help="run the autopilot role with a policy file")
    run_p.add_argument("policy", type=Path, help="autopilot policy (see docs/autopilot.md)")
    run_p.add_argument("--check", action="store_true", help="validate the policy, then exit")
    run_p.set_defaults(handler=run)
    approve_p = actions.add_parser("approve", help="approve a proposal made in approve mode")
    approve_p.add_argument("id")
    approve_p.add_argument("--by", help="who approves (default: the login name)")
    approve_p.set_defaults(handler=approve)
    log_p = actions.add_parser("log", help="the audit trail of proposals and changes (ClickHouse)")
    log_p.add_argument("--budget", help="one budget's decisions only")
    log_p.add_argument("--limit", type=int, default=50, help="newest N (default 50)")
    log_p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    log_p.set_defaults(handler=show_log)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.autopilot.app import Autopilot
    from tokenfuse.autopilot.policy import load_policy
    from tokenfuse.cli import stop_on_signals
    from tokenfuse.config.roles import settings_for
    from tokenfuse.kafka.topics import create_topics
    from tokenfuse.observability.serve import serve_metrics

    policy = load_policy(args.policy)
    if args.check:
        print(f"{args.policy}: OK: {len(policy.rules)} rule(s)")
        return 0
    settings = settings_for("autopilot")
    create_topics(settings)
    pilot = Autopilot(settings, policy)
    server = serve_metrics(pilot.metrics.registry, settings.web_host, settings.autopilot_metrics_port)
    print(f"autopilot: {len(policy.rules)} rule(s) from {args.policy}; metrics on "
          f"http://{settings.web_host}:{server.server_port}/metrics", flush=True)
    try:
        pilot.run(stop_on_signals(), on_ready=lambda: print("autopilot ready", flush=True))
    finally:
        server.shutdown()
    return 0


def approve(args: argparse.Namespace) -> int:
    from tokenfuse.autopilot.records import approval, encode_decision, read_decisions
    from tokenfuse.config.roles import settings_for
    from tokenfuse.kafka.produce import produce_and_wait

    settings = settings_for("budget operator")
    approved = approval(read_decisions(settings), args.id, args.by or getpass.getuser(), int(time.time() * 1000))
    produce_and_wait(settings, settings.topic("autopilot"), approved.id.encode(),
                     encode_decision(approved, settings.budget_signer()))
    print(f"{approved.id}: approved ({approved.kind} {approved.budget_id} {approved.old_limit} -> "
          f"{approved.new_limit}); the autopilot applies it within its bounds")
    return 0


def show_log(args: argparse.Namespace) -> int:
    from tokenfuse.cli.sql import print_result
    from tokenfuse.config import Settings
    from tokenfuse.history.sql import run_sql

    where = "WHERE budget_id = {budget:String}" if args.budget else ""
    result = run_sql(Settings.from_env(),
                     f"SELECT {', '.join(LOG_COLUMNS)} FROM autopilot_log {where} "
                     "ORDER BY decided_at DESC, revision DESC LIMIT {limit:UInt32}",
                     {"budget": args.budget, "limit": args.limit})
    print_result(result["columns"], result["rows"], args.format)
    return 0
