"""Ready means enforcing. A starting worker answers /stats within seconds, but until it has read
the budgets, recovered its tables and worked through the usage that was waiting for it, a
runaway agent is not blocked. So the worker is ready once:

1. the budgets and control topics are read to their ends (the control topic: operators' kills
   the worker must not override, and the versions its states must outrank),
2. Faust's table recovery is complete and it owns partitions,
3. the usage partitions it owns are committed up to their end as they stood when it got there,
   and then the deltas partitions it owns up to theirs (the backlog is settled, not only read).

It then logs READY_LINE once (the demo and tests wait for it) and /stats says "ready": true.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from confluent_kafka import Consumer, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.worker.budget_feed import BudgetFeed
from tokenfuse.worker.control_view import ControlView
from tokenfuse.worker.faust_adapter.recovery import committed_ends

log = logging.getLogger(__name__)

READY_LINE = "tokenfuse worker ready: enforcing"


class Readiness:
    def __init__(self, settings: Settings, feed: BudgetFeed, control: ControlView, recovered: Callable[[], bool],
                 owned: Callable[[str], set[int]]):
        self.settings = settings
        self.feed = feed
        self.control = control
        self.recovered = recovered  # tables recovered and partitions assigned
        self.owned = owned  # topic name -> partitions this worker owns
        self.ready = False
        self.stage = "budgets"
        self._targets: dict[tuple[str, int], int] = {}
        self._consumer: Consumer | None = None

    async def check(self) -> bool:
        """One step towards ready; True once ready (and from then on)."""
        if self.ready:
            return True
        if (self.stage == "budgets" and self.feed.started and self.feed.follower.wait_caught_up(0)
                and self.control.follower is not None and self.control.follower.wait_caught_up(0)):
            self.stage = "tables"
        if self.stage == "tables" and self.recovered():
            self.stage, self._targets = "usage", await self._ends("usage")
        if self.stage == "usage" and await self._reached():
            self.stage, self._targets = "deltas", await self._ends("deltas")
        if self.stage == "deltas" and await self._reached():
            self.ready = True
            self._close()
            log.info(READY_LINE)
        return self.ready

    def status(self) -> dict[str, Any]:
        return {"ready": self.ready, "waiting_for": None if self.ready else self.stage}

    async def _ends(self, name: str) -> dict[tuple[str, int], int]:
        topic = self.settings.topic(name)
        parts = self.owned(topic)

        def ends() -> dict[tuple[str, int], int]:
            stable = {(topic, p): self._client().get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                      for p in parts}
            # After the last committed data record: a transaction's commit marker is never consumed.
            return committed_ends(self.settings.kafka_config, stable)
        return await asyncio.to_thread(ends)

    async def _reached(self) -> bool:
        """Are the group's committed offsets at or past the targets?"""
        if not self._targets:
            return True

        def committed() -> list[TopicPartition]:
            return self._client().committed([TopicPartition(t, p) for t, p in self._targets], timeout=10)
        done = await asyncio.to_thread(committed)
        return all(tp.offset >= self._targets[(tp.topic, tp.partition)] for tp in done
                   if self._targets[(tp.topic, tp.partition)] > 0)

    def _client(self) -> Consumer:
        """A consumer of the worker's group that never subscribes: it reads offsets, no records."""
        if self._consumer is None:
            self._consumer = Consumer({**self.settings.kafka_config, "group.id": self.settings.app_id,
                                       "enable.auto.commit": False})
        return self._consumer

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
