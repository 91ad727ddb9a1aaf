"""Operators' acks (control/acks.py), followed like the budgets: the detectors ask `quiet()`
before raising an alert. Unsigned or forged acks are ignored (logged by the follower)."""

from __future__ import annotations

from typing import Any

from tokenfuse.config import Settings
from tokenfuse.control.acks import is_quiet
from tokenfuse.control.signing import verify_record
from tokenfuse.errors import DecodeError, SignatureError
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower


class AckFeed:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.verifier = settings.control_verifier()
        self.follower: CompactedTopicFollower | None = None
        self.acks: dict[str, Any] = {}
        self.version = -1

    def start(self) -> None:
        if self.follower is None:
            self.follower = CompactedTopicFollower(self.settings, self.settings.topic("acks"), self.decode)

    def decode(self, data: bytes) -> dict[str, Any]:
        ack = codec("AlertAck").decode(data)
        try:
            verify_record("AlertAck", ack, self.verifier, f"alert ack {ack.get('alert_id')!r}")
        except SignatureError as exc:
            raise DecodeError(str(exc)) from None
        return ack

    def quiet(self, budget_id: str, kind: str, scope: str, now_ms: int) -> bool:
        if self.follower is None:
            return False
        if self.follower.version != self.version:  # a copy only when an ack arrived
            self.version = self.follower.version
            self.acks = self.follower.snapshot()
        return is_quiet(self.acks, budget_id, kind, scope, now_ms)
