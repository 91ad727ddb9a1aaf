"""`tokenfuse worker`: run the Faust worker (budgets, kill switch, alerts)."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the stream worker: budgets, kill switch, alerts")
    p.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import faust  # noqa: F401  (heavy import: only for this command)

    from tokenfuse.config.roles import settings_for
    from tokenfuse.kafka.topics import create_topics
    from tokenfuse.worker.app import build_app

    settings = settings_for("worker")
    create_topics(settings)
    app = build_app(settings)
    logging.getLogger("tokenfuse.kafka").setLevel(logging.CRITICAL)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()  # exits the process when the worker stops
    return 0
