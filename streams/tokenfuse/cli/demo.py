"""`tokenfuse demo`: the local end-to-end demo (see tokenfuse/dev/demo.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the local demo: broker, worker, sink, a runaway agent blocked")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.dev.demo import run_demo

    return run_demo()
