"""The worker's web pages: GET /stats (counters), GET /metrics (the same for Prometheus) and
GET /totals?scope=... (a scope's current windows, from the worker that owns it).

Each answers only requests whose Host header names a loopback address (or the configured host),
so a web page in a browser on this machine cannot read them through DNS rebinding, and that
carry the token the worker writes at start to `<data_dir>/worker.token`, readable by its owner
only (config/token_file.py, as the sink's SQL endpoint): other users of the machine see no
scope names nor spend. Clients: `worker_get` here; scrapers: docs/local-endpoints.md."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import AbstractSet as Set, Any, Mapping

import faust

from tokenfuse.config import Settings, token_file
from tokenfuse.kafka.partitions import scope_partition
from tokenfuse.observability.metrics import render_worker
from tokenfuse.usage.windows import WindowSpec
from tokenfuse.worker.account import Account
from tokenfuse.worker.readiness import Readiness


TOKEN_FILE = "worker.token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def host_allowed(host_header: str | None, extra_hosts: Set[str] = frozenset()) -> bool:
    """Is the Host header (host, host:port, [v6]:port) a loopback name or one of `extra_hosts`?"""
    if not host_header:
        return False
    host = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    if host.startswith("["):
        host = host[1:host.index("]")] if "]" in host else host
    return host.lower() in LOOPBACK_HOSTS | extra_hosts


def token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def worker_get(settings: Settings, path: str, timeout: float = 5.0) -> tuple[int, Any]:
    """GET one of the pages of the worker run with `settings`, with its token: (status, the JSON
    body, or the text of /metrics)."""
    token = token_file.read_token(token_path(settings), "worker")
    request = urllib.request.Request(f"http://{settings.web_host}:{settings.web_port}{path}",
                                     headers=token_file.bearer(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, body.decode() if path.startswith("/metrics") else json.loads(body or b"null")


def add_pages(app: faust.App, stats: Counter[str], specs: Mapping[str, WindowSpec], account: Account,
              partitions: int, settings: Settings, readiness: Readiness) -> None:
    hosts, token = {settings.web_host}, token_file.write_token(token_path(settings))

    def refused(web: Any, request: Any) -> Any:
        if not host_allowed(request.headers.get("Host"), hosts):
            return web.json({"error": "this server answers loopback hosts only"}, status=403)
        if not token_file.bearer_matches(request.headers.get("Authorization"), token):
            return web.json({"error": token_file.refusal(token_path(settings))}, status=401)
        return None

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        return refused(web, request) or web.json({"counters": dict(stats), "tracked_windows": sorted(specs),
                                                       **readiness.status()})

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        denied = refused(web, request)
        if denied is not None:
            return denied
        body, content_type = render_worker(stats)
        return web.bytes(body, headers={"Content-Type": content_type})  # aiohttp: no charset in content_type=

    @app.page("/totals")
    async def totals_page(web: Any, request: Any) -> Any:
        denied = refused(web, request)
        if denied is not None:
            return denied
        scope = request.query.get("scope", "")
        if not scope or scope_partition(scope, partitions) not in account.owned():
            return web.json({"error": f"scope {scope!r} is not owned by this worker"}, status=404)
        return web.json(account.totals(scope, specs, int(time.time() * 1000)))
