"""Serve a registry on `/metrics` over loopback, for roles without a web server of their own."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from tokenfuse.errors import TokenfuseError


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """Start the exporter in a daemon thread; return its server (shutdown() to stop; its
    `server_port` is the port bound, useful with port 0)."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise TokenfuseError(f"cannot serve /metrics on {host}:{port} ({exc.strerror}); choose a free port") from None
    return server
