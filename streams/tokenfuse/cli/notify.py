"""`tokenfuse notify CONFIG`: deliver alerts and blocks to webhooks, Slack and email."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notify", help="run the notifier (alerts and blocks to webhooks, Slack, email)")
    p.add_argument("config", type=Path, help="notifications file (see deploy/notifications.example.yaml)")
    p.add_argument("--check", action="store_true", help="validate the file (and its environment variables), then exit")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.cli import stop_on_signals
    from tokenfuse.config.roles import settings_for
    from tokenfuse.kafka.topics import create_topics
    from tokenfuse.notify.app import Notifier
    from tokenfuse.notify.config import load_notifications
    from tokenfuse.observability.serve import serve_metrics

    config = load_notifications(args.config, os.environ)
    if args.check:
        print(f"{args.config}: OK: {len(config.channels)} channel(s), {len(config.routes)} route(s)")
        return 0
    settings = settings_for("notifier")
    create_topics(settings)
    notifier = Notifier(settings, config)
    server = serve_metrics(notifier.metrics.registry, settings.web_host, settings.notify_metrics_port)
    stop = stop_on_signals()
    print(f"notify: {len(config.channels)} channel(s), {len(config.routes)} route(s); metrics on "
          f"http://{settings.web_host}:{server.server_port}/metrics", flush=True)
    try:
        notifier.run(stop, on_ready=lambda: print("notify ready", flush=True))
    finally:
        server.shutdown()
    return 0
