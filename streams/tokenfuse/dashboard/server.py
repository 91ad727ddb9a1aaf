"""Run the dashboard: Kafka followers, the ClickHouse reader, the hub, and uvicorn on 127.0.0.1.

ClickHouse is read through `history.sql.sql_runner`, like `tokenfuse sql`: through the running
sink's endpoint when one answers at start (the sink owns the embedded engine), else on the
history opened here (then no sink can start on the same data folder until the dashboard
stops), or directly on a ClickHouse server when TOKENFUSE_CLICKHOUSE_URL is set.
"""

from __future__ import annotations

import socket
from typing import Callable

import uvicorn

from tokenfuse.config import Settings
from tokenfuse.dashboard.app import Dashboard, create_app
from tokenfuse.dashboard.hub import Channel, Hub, Sources
from tokenfuse.dashboard.live import LiveState
from tokenfuse.dashboard.security import load_token
from tokenfuse.dashboard.views import Views
from tokenfuse.errors import TokenfuseError
from tokenfuse.history.sql import sql_runner

HOST = "127.0.0.1"  # never another interface: see security.py


def channel_sources(views: Views, live: LiveState) -> Sources:
    def live_part(channel: Channel) -> dict:
        return views.now_live() if channel.page == "now" else views.scope_live(channel.scope)

    def spend_part(channel: Channel) -> dict:
        if channel.page == "now":
            return views.now_spend()
        return views.scope_spend(channel.scope, channel.range or None)

    return Sources(live=live_part, spend=spend_part, usage_marks=live.usage_marks)


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise TokenfuseError(f"cannot serve the dashboard on {HOST}:{port} ({exc.strerror}); "
                             "set TOKENFUSE_DASHBOARD_PORT to a free port, or 0 for any") from None
    sock.listen(128)
    return sock


def serve(settings: Settings, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM; `announce(url)` once the dashboard takes requests."""
    token = load_token(settings) if settings.dashboard_operator else None
    sock = bind(settings.dashboard_port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    live = LiveState(settings)
    try:
        with sql_runner(settings) as run:
            views = Views(live, run, settings.windows)
            hub = Hub(channel_sources(views, live), settings.dashboard_refresh_seconds)
            live.on_change = hub.kafka_changed
            app = create_app(Dashboard(settings, views, hub, token, on_ready=lambda: announce(url)))
            config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                                    lifespan="on")
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        live.close()
        sock.close()
