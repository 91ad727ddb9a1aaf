"""The budgets every worker applies: the compacted budgets topic, followed in a thread of its
own (kafka/follow.py), turned into a BudgetIndex when it changes.

Only budgets signed with a budget key count (budgets/signed.py): an unsigned or forged record, or
a bare tombstone, changes nothing; it is counted (/stats `budgets_rejected`) and logged, at most
a line every few seconds."""

from __future__ import annotations

import logging
from collections import Counter
from typing import MutableMapping

from tokenfuse.budgets.signed import decode_verified_budget, in_force
from tokenfuse.config import Settings
from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.usage.windows import WindowSpec
from tokenfuse.worker.engine.rules import BudgetIndex

log = logging.getLogger(__name__)

FIRST_READ_TIMEOUT_S = 30


class BudgetFeed:
    def __init__(self, settings: Settings, specs: MutableMapping[str, WindowSpec], stats: Counter[str]):
        self.settings = settings
        self.verifier = settings.budget_verifier()
        self.stats = stats
        self.specs = specs  # tracked windows; calendar windows in new time zones are added
        self.follower: CompactedTopicFollower | None = None
        self.index = BudgetIndex([])
        self.version = -1

    def start(self) -> None:
        """Open the budgets topic (as the worker starts, not when the first usage arrives)."""
        if self.follower is None:
            self.follower = CompactedTopicFollower(self.settings, self.settings.topic("budgets"),
                                                   self._decode, ignore_tombstones=True)

    def _decode(self, data: bytes) -> dict:
        return decode_verified_budget(data, self.verifier)

    @property
    def started(self) -> bool:
        return self.follower is not None

    def current(self) -> BudgetIndex:
        """The index of the budgets read so far; the first call waits for those present at start."""
        self.start()
        assert self.follower is not None
        self.follower.wait_first_read(FIRST_READ_TIMEOUT_S)
        self.stats["budgets_rejected"] = self.follower.rejected
        if self.follower.version != self.version:
            self.version = self.follower.version
            self.index = self._index()
        return self.index

    def _index(self) -> BudgetIndex:
        assert self.follower is not None
        index = BudgetIndex(in_force(self.follower.snapshot()).values())
        for budget_id, reason in index.rejected.items():
            log.error("budget %s ignored: %s", budget_id, reason)
        for spec in index.windows:
            if spec.name in self.specs:
                continue
            if spec.tracked_on_demand:
                self.specs[spec.name] = spec  # tracked from now on
            else:
                log.error("budget window %s is not tracked; add it to TOKENFUSE_WINDOWS", spec.name)
        return index
