"""Backlog awareness, the runtime's side: how long the worker's picture of this runtime's shared
scopes (global, org, team, agent, unless enforced locally) has been out of date.

The kill switch reads the worker's heartbeats (`<prefix>.worker-status`, worker/status.py) on its
consumer and hands them here. A scope lives in one deltas partition; its picture is fresh as of
the newest `fresh_ms` any verified heartbeat of that partition gave (a restarted worker that
reports 0 while it catches up does not reset it). Blind for = now - that; with no heartbeat yet,
blind since this runtime started. Past `max_blind_s` the kill switch applies the fail policy:
a block decided on a picture that old would come too late to matter.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tokenfuse.control.signing import Verifier, verify_record
from tokenfuse.errors import DecodeError, SignatureError
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.partitions import scope_partition

log = logging.getLogger(__name__)


class Backlog:
    def __init__(self, scopes: list[str], verifier: Verifier, max_blind_s: float, started_ms: int):
        self.scopes = scopes  # the shared scopes whose picture matters here
        self._verifier = verifier
        self.max_blind_ms = int(max_blind_s * 1000)
        self._started_ms = started_ms
        self._lock = threading.Lock()
        self.fresh: dict[int, int] = {}  # deltas partition -> newest fresh_ms reported
        self.versions: dict[int, int] = {}
        self.partitions = 0  # from the heartbeats; 0 = none read yet
        self.rejected = 0
        self.blind = False  # set by update(), read by every check(): one attribute read

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the worker-status topic (the reader thread)."""
        if value is None:
            return
        try:
            status = codec("WorkerStatus").decode(value)
            verify_record("WorkerStatus", status, self._verifier, f"worker status {key!r}")
        except (DecodeError, SignatureError) as exc:
            self.rejected += 1
            log.warning("tokenfuse: ignoring worker status record: %s", exc)
            return
        p = status["partition"]
        if (key or b"") != f"deltas:{p}".encode() or status["version"] <= self.versions.get(p, -1):
            return
        with self._lock:
            self.versions[p] = status["version"]
            self.partitions = status["partitions"]
            self.fresh[p] = max(self.fresh.get(p, 0), status["fresh_ms"])

    def blind_for_ms(self, now_ms: int) -> int:
        """How long the stalest of this runtime's shared scopes has been blind."""
        with self._lock:
            if not self.partitions:
                return now_ms - self._started_ms
            oldest = min(self.fresh.get(scope_partition(s, self.partitions), 0) for s in self.scopes)
        return now_ms - max(oldest, self._started_ms if oldest == 0 else 0)

    def update(self, now_ms: int) -> bool:
        """Recompute `blind` (the reader thread, once a second); True when it changed."""
        blind = bool(self.scopes) and self.max_blind_ms > 0 and self.blind_for_ms(now_ms) > self.max_blind_ms
        changed, self.blind = blind != self.blind, blind
        return changed

    def describe(self, now_ms: int) -> dict[str, Any]:
        return {"blind_for_ms": self.blind_for_ms(now_ms), "max_blind_ms": self.max_blind_ms, "blind": self.blind}
