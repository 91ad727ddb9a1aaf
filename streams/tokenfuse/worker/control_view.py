"""The control topic as the worker reads it: the newest verified state of every scope, whoever
published it (this worker, another one, or an operator's `tokenfuse kill`).

Why the worker reads what it writes: a manual kill must stand until the operator releases it or
its `until` passes, so the worker must know it before its next automatic decision; and every
state it publishes must outrank (by version) the newest one runtimes may have seen.
"""

from __future__ import annotations

from typing import Any

from tokenfuse.config import Settings
from tokenfuse.control.signing import decode_verified, newer
from tokenfuse.kafka.follow import CompactedTopicFollower

FIRST_READ_TIMEOUT_S = 30


class ControlView:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.verifier = settings.control_verifier()
        self.follower: CompactedTopicFollower | None = None

    def start(self) -> None:
        if self.follower is None:
            self.follower = CompactedTopicFollower(self.settings, self.settings.topic("control"), self._decode,
                                                   ignore_tombstones=True, supersedes=newer)

    def _decode(self, data: bytes) -> dict[str, Any]:
        return decode_verified(data, self.verifier)

    def newest(self, scope: str) -> dict[str, Any] | None:
        """The scope's newest verified state (the first call waits for the topic's current end)."""
        self.start()
        assert self.follower is not None
        self.follower.wait_first_read(FIRST_READ_TIMEOUT_S)
        return self.follower.get(scope)

    def manual_override(self, scope: str, now_ms: int) -> dict[str, Any] | None:
        """The operator's live kill (or warn/throttle) of the scope, if the newest state is one."""
        state = self.newest(scope)
        if state is None or state["source"] != "manual" or state["state"] == "allow":
            return None
        if state["until"] is not None and state["until"] <= now_ms:
            return None
        return state

    @property
    def rejected(self) -> int:
        return self.follower.rejected if self.follower is not None else 0
