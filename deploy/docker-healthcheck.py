#!/usr/bin/env python3
"""Docker health checks of the tokenfuse roles (installed in the image as `tokenfuse-healthcheck`).

  worker: its web server answers /stats with its token (it serves only once the Faust worker runs).
  sink:   the ClickHouse server it writes to answers and holds the usage_events table.
  notify, autopilot: their /metrics answer (served once the role follows its topics).
Exit 0 = healthy; anything else prints why.
"""

from __future__ import annotations

import sys


def main(role: str) -> int:
    from tokenfuse.config import Settings

    settings = Settings.from_env()
    if role == "worker":
        from tokenfuse.worker.web import worker_get

        # With the worker's token, which it wrote to the data folder both share in the container.
        status, _ = worker_get(settings.model_copy(update={"web_host": "127.0.0.1"}), "/stats", timeout=4)
        return 0 if status == 200 else 1
    if role == "sink":
        import clickhouse_connect

        if settings.clickhouse_url is None:
            print("TOKENFUSE_CLICKHOUSE_URL is not set")
            return 1
        client = clickhouse_connect.get_client(dsn=settings.clickhouse_url.get_secret_value(),
                                               connect_timeout=3, send_receive_timeout=4)
        return 0 if client.command("EXISTS TABLE usage_events") == 1 else 1
    if role in ("notify", "autopilot"):
        port = settings.notify_metrics_port if role == "notify" else settings.autopilot_metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=4) as reply:
            return 0 if reply.status == 200 else 1
    print(f"unknown role {role!r} (worker, sink, notify, autopilot)")
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
    except Exception as exc:  # a health check reports, it does not trace back
        print(f"unhealthy: {type(exc).__name__}: {exc}")
        sys.exit(1)
