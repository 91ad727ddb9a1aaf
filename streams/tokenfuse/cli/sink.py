"""`tokenfuse sink`: store usage, alerts, control changes and budgets in ClickHouse."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sink", help="run the ClickHouse sink (owns the embedded engine, serves tokenfuse sql)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenfuse.cli import stop_on_signals
    from tokenfuse.config import Settings
    from tokenfuse.history.client import History
    from tokenfuse.history.migrate import migrate
    from tokenfuse.history.sink import Sink
    from tokenfuse.history.sql import serve
    from tokenfuse.kafka.topics import create_topics

    settings = Settings.from_env()
    create_topics(settings)
    history = History(settings)
    applied = migrate(history, settings.history_retention_days, progress=lambda m: print(f"sink: {m}", flush=True))
    sink = Sink(settings, history)
    server = serve(history, settings, sink.stats, sink.gauges)
    stop = stop_on_signals()
    print(f"sink: {history.where}, {len(applied)} migration(s) applied; SQL on "
          f"http://{settings.sink_host}:{settings.sink_port}/sql, metrics on /metrics", flush=True)
    try:
        sink.run(stop, on_ready=lambda: print("sink ready", flush=True))
    finally:
        server.shutdown()
        history.close()
    return 0
