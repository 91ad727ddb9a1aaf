"""`tokenfuse kill SCOPE`, `tokenfuse release SCOPE` (the operators' manual kill switch) and
`tokenfuse control rotate-key` (docs/control-plane.md)."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone


def register(sub: argparse._SubParsersAction) -> None:
    kill = sub.add_parser("kill", help="block a scope by hand (e.g. agent:bot-7, team:acme/search)")
    kill.add_argument("scope")
    kill.add_argument("--reason", required=True, help="why; shown to the blocked runtimes")
    kill.add_argument("--until", help="expiry: a duration (30m, 2h) or an ISO time; default: until released")
    kill.set_defaults(handler=run, state="block")
    release = sub.add_parser("release", help="allow a blocked scope again")
    release.add_argument("scope")
    release.add_argument("--reason", default="released by operator")
    release.set_defaults(handler=run, state="allow", until=None)
    control = sub.add_parser("control", help="control-plane maintenance")
    actions = control.add_subparsers(dest="action", metavar="ACTION", required=True)
    rotate = actions.add_parser("rotate-key", help="re-sign every live control state with TOKENFUSE_CONTROL_KEY")
    rotate.set_defaults(handler=run_rotate)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.config.roles import settings_for
    from tokenfuse.control.manual import publish_manual_state

    record = publish_manual_state(settings_for("operator"), args.scope, args.state, args.reason, args.until)
    until = (" until " + datetime.fromtimestamp(record["until"] / 1000, timezone.utc).isoformat(timespec="seconds")
             if record["until"] else "")
    print(f"{args.scope}: {record['state']}{until} ({record['reason']})")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from tokenfuse.config.roles import settings_for
    from tokenfuse.control.manual import rotate_key

    settings = settings_for("operator")
    scopes = rotate_key(settings)
    print(f"{len(scopes)} control state(s) re-signed with key {settings.control_key_id!r}")
    return 0
