"""The worker's web pages: GET /stats (counters) and GET /totals?scope=... (a scope's current
windows, from the worker that owns it)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Mapping

import faust

from tokenfuse.kafka.partitions import scope_partition
from tokenfuse.usage.windows import WindowSpec
from tokenfuse.worker.account import Account


def add_pages(app: faust.App, stats: Counter[str], specs: Mapping[str, WindowSpec], account: Account,
              partitions: int) -> None:
    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json({"counters": dict(stats), "tracked_windows": sorted(specs)})

    @app.page("/totals")
    async def totals_page(web: Any, request: Any) -> Any:
        scope = request.query.get("scope", "")
        if not scope or scope_partition(scope, partitions) not in account.owned():
            return web.json({"error": f"scope {scope!r} is not owned by this worker"}, status=404)
        return web.json(account.totals(scope, specs, int(time.time() * 1000)))
