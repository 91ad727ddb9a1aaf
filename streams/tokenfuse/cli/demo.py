"""`tokenfuse demo`: the local end-to-end demo (see tokenfuse/dev/demo.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the local demo: broker, worker, sink, dashboard, a runaway agent blocked")
    p.add_argument("--exit", action="store_true",
                   help="stop the stack when the demo is done (default: keep it up for the dashboard until Ctrl-C)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.dev.demo import run_demo

    return run_demo(keep_up=not args.exit)
