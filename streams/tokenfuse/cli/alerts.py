"""`tokenfuse alerts ack ALERT_ID [--expected --until 2h] --reason ...`: operators' feedback."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="acknowledge alerts (feedback to the detectors)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ack = actions.add_parser("ack", help="acknowledge an alert; --expected keeps its detector quiet on that scope")
    ack.add_argument("alert_id")
    ack.add_argument("--expected", action="store_true",
                     help="the alert was expected behaviour: the same detector stays quiet for that scope until --until")
    ack.add_argument("--until", help="with --expected: a duration (30m, 2h, 1d) or an ISO time")
    ack.add_argument("--reason", required=True, help="why (stored in ClickHouse with the ack)")
    ack.add_argument("--by", help="who acknowledges (default: the OS user)")
    ack.set_defaults(handler=run_ack)


def run_ack(args: argparse.Namespace) -> int:
    from tokenfuse.config import Settings
    from tokenfuse.control.acks import build_ack, find_alert, now_ms, publish_ack
    from tokenfuse.history.sql import sql_runner

    settings = Settings.from_env()
    with sql_runner(settings) as query:
        alert = find_alert(query, args.alert_id)
    ack = publish_ack(settings, build_ack(args.alert_id, alert, expected=args.expected, until=args.until,
                                          reason=args.reason, acked_by=args.by, now_ms=now_ms()))
    if ack["expected"]:
        until = datetime.fromtimestamp(ack["until"] / 1000, timezone.utc).isoformat(timespec="seconds")
        print(f"{ack['kind']} alerts of budget {ack['budget_id']} on {ack['scope']}: quiet until {until} "
              f"(acknowledged by {ack['acked_by']}: {ack['reason']})")
    else:
        print(f"{args.alert_id}: acknowledged by {ack['acked_by']} ({ack['reason']})")
    return 0
