"""One server-sent-event stream per open page, fed from one computation per channel.

Every open page subscribes to a channel (the Now page, or one scope with its chart range). The
hub computes each channel's data once and sends it to all of that channel's pages, and only
when it changed:

- live parts (control states, alerts) on every Kafka change, at once: no query involved;
- spend parts (ClickHouse rollups) every `refresh_seconds` while usage flows (the usage topic's
  end offsets moved in the last `ACTIVE_SECONDS`, which covers the sink's batching), at least
  every `IDLE_SECONDS` otherwise, and when budgets change. An idle dashboard costs no queries.

The pages never poll: N open pages cost N idle connections, not N x queries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from tokenfuse.errors import TokenfuseError

log = logging.getLogger(__name__)

ACTIVE_SECONDS = 10.0
IDLE_SECONDS = 30.0
MAX_CHANNELS = 64  # distinct scope pages open at once; each costs queries per refresh
QUEUE_SIZE = 8


@dataclass(frozen=True)
class Channel:
    """What a page shows: `page` "now" or "scope", and for a scope its key and chart range."""

    page: str
    scope: str = ""
    range: str = ""


@dataclass(frozen=True)
class Sources:
    """How to compute a channel's parts (blocking calls; spend runs in a worker thread)."""

    live: Callable[[Channel], dict[str, Any]]
    spend: Callable[[Channel], dict[str, Any]]
    usage_marks: Callable[[], Any]  # changes whenever usage arrives (the usage topic's end offsets)


# The hub's counters and gauges, served on the dashboard's /metrics (docs/metrics.md).
METRICS_HELP = {
    "pushes": "page parts sent to open pages",
    "spend_refreshes": "rounds of spend queries for the open pages",
    "errors": "page parts that failed to compute (the page shows the error)",
    "streams": "open page streams",
    "channels": "distinct pages open (each computed once)",
}
METRICS_GAUGES = ("streams", "channels")


class TooManyChannels(TokenfuseError):
    """More distinct pages are open than the dashboard serves at once."""


class Hub:
    def __init__(self, sources: Sources, refresh_seconds: float):
        self.sources, self.refresh_seconds = sources, refresh_seconds
        self.queues: dict[Channel, set[asyncio.Queue]] = defaultdict(set)
        self.last: dict[tuple[Channel, str], str] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._live_due = asyncio.Event()
        self._spend_due = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.counters = {"pushes": 0, "spend_refreshes": 0, "errors": 0}

    def metrics(self) -> dict[str, int]:
        return {**self.counters, "streams": sum(len(q) for q in self.queues.values()), "channels": len(self.queues)}

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._live_loop()), asyncio.create_task(self._spend_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def kafka_changed(self, source: str) -> None:
        """Called from the Kafka followers' threads."""
        if self.loop is None:
            return
        self.loop.call_soon_threadsafe(self._live_due.set)
        if source == "budgets":
            self.loop.call_soon_threadsafe(self._spend_due.set)

    async def subscribe(self, channel: Channel) -> AsyncIterator[dict[str, str]]:
        """SSE events for one page: the channel's current parts first, then every change."""
        if channel not in self.queues and len(self.queues) >= MAX_CHANNELS:
            raise TooManyChannels(f"more than {MAX_CHANNELS} different pages are open; close some")
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.queues[channel].add(queue)
        try:
            for part, compute in (("live", self.sources.live), ("spend", self.sources.spend)):
                text = self.last.get((channel, part))
                if text is None:
                    text = await self._compute(channel, part, compute)
                yield {"event": part, "data": text}
            while True:
                yield await queue.get()
        finally:
            self.queues[channel].discard(queue)
            if not self.queues[channel]:
                del self.queues[channel]
                self.last.pop((channel, "live"), None)
                self.last.pop((channel, "spend"), None)

    async def _compute(self, channel: Channel, part: str, compute: Callable[[Channel], dict[str, Any]]) -> str:
        try:
            data = await asyncio.to_thread(compute, channel) if part == "spend" else compute(channel)
        except (TokenfuseError, OSError) as exc:  # OSError: the sink's endpoint went away
            self.counters["errors"] += 1
            data = {"error": str(exc) or type(exc).__name__}
        except Exception:  # a bug: logged with its traceback; the page stays connected and says so
            self.counters["errors"] += 1
            log.exception("computing the %s part of %s failed", part, channel)
            data = {"error": "internal error (see the dashboard's log)"}
        text = json.dumps(data, default=str)
        self.last[(channel, part)] = text
        return text

    async def _publish(self, channel: Channel, part: str, compute: Callable[[Channel], dict[str, Any]]) -> None:
        before = self.last.get((channel, part))
        text = await self._compute(channel, part, compute)
        if text == before:
            return
        for queue in list(self.queues.get(channel, ())):
            if queue.full():  # a slow page: only the newest state matters
                queue.get_nowait()
            queue.put_nowait({"event": part, "data": text})
            self.counters["pushes"] += 1

    async def _live_loop(self) -> None:
        while True:
            await self._live_due.wait()
            self._live_due.clear()
            for channel in list(self.queues):
                await self._publish(channel, "live", self.sources.live)

    async def _spend_loop(self) -> None:
        marks, last_change, last_refresh = None, 0.0, 0.0
        while True:
            try:
                await asyncio.wait_for(self._spend_due.wait(), self.refresh_seconds)
            except asyncio.TimeoutError:
                pass
            budgets_changed = self._spend_due.is_set()
            self._spend_due.clear()
            if not self.queues:
                continue
            try:
                now_marks = await asyncio.to_thread(self.sources.usage_marks)
            except TokenfuseError as exc:
                log.warning("cannot read the usage topic's offsets: %s", exc)
                now_marks = None
            now = time.monotonic()
            if now_marks != marks:
                marks, last_change = now_marks, now
            if budgets_changed or now - last_change <= ACTIVE_SECONDS or now - last_refresh >= IDLE_SECONDS:
                last_refresh = now
                self.counters["spend_refreshes"] += 1
                for channel in list(self.queues):
                    await self._publish(channel, "spend", self.sources.spend)
