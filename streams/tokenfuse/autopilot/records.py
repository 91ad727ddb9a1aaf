"""Decisions on the autopilot topic: signed with a budget key (an approval leads to a budget
change, so it needs the same authority as one), verified by everyone who acts on them."""

from __future__ import annotations


from tokenfuse.autopilot.book import Decision
from tokenfuse.config import Settings
from tokenfuse.control.signing import Signer, Verifier, sign_record, verify_record
from tokenfuse.errors import BrokerUnavailable, ConfigError
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower

SCHEMA = "AutopilotDecision"


def encode_decision(decision: Decision, signer: Signer) -> bytes:
    return codec(SCHEMA).encode(sign_record(SCHEMA, decision.record(), signer))


def decision_decoder(verifier: Verifier):
    def decode(data: bytes) -> Decision:
        record = codec(SCHEMA).decode(data)
        verify_record(SCHEMA, record, verifier, f"autopilot decision {record.get('id')!r}")
        return Decision.from_record(record)

    return decode


def read_decisions(settings: Settings, timeout: float = 30.0) -> dict[str, Decision]:
    """Every decision on the topic (its latest status), verified when budget keys are set."""
    topic = settings.topic("autopilot")
    verifier = settings.budget_verifier()
    decode = decision_decoder(verifier) if verifier.keys else (
        lambda data: Decision.from_record(codec(SCHEMA).decode(data)))
    follower = CompactedTopicFollower(settings, topic, decode, ignore_tombstones=True)
    try:
        if not follower.wait_caught_up(timeout):
            raise BrokerUnavailable(f"timed out after {timeout:g}s reading {topic} to its end")
        return follower.snapshot()
    finally:
        follower.close()


def approval(decisions: dict[str, Decision], decision_id: str, by: str, now_ms: int) -> Decision:
    """The record approving a proposal; ConfigError says why it cannot be approved."""
    decision = decisions.get(decision_id)
    if decision is None:
        raise ConfigError(f"no autopilot decision {decision_id!r} (see `tokenfuse autopilot log`)")
    if decision.status != "proposed":
        raise ConfigError(f"{decision_id} is {decision.status}, not a proposal waiting for approval")
    if decision.mode != "approve":
        raise ConfigError(f"{decision_id} was proposed in {decision.mode} mode: only approve-mode proposals "
                          "are applied on approval (set mode: approve in the policy)")
    return decision.next(status="approved", approved_by=by, approved_at=now_ms)
