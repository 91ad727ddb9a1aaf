"""`tokenfuse dashboard`: the web UI on 127.0.0.1 (see tokenfuse/dashboard/ and docs/dashboard.md)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve the live web dashboard on 127.0.0.1 (TOKENFUSE_DASHBOARD_PORT)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.config.roles import settings_for
    from tokenfuse.dashboard.server import serve

    serve(settings_for("dashboard"), announce=lambda url: print(f"dashboard ready on {url}", flush=True))
    return 0
