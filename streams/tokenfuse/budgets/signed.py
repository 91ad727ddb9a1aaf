"""Budgets carry authority over every runtime's spend, so only holders of a budget key can set
them: operators sign each record (budgets apply), the worker applies verified ones only.

A deletion cannot be a Kafka tombstone (a null value has no room for a signature): it is a signed
record with `deleted` set, and readers ignore bare tombstones.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from tokenfuse.control.signing import Signer, Verifier, sign_record, verify_record
from tokenfuse.kafka.codec import codec


def sign_budget(budget: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    return sign_record("Budget", budget, signer)


def signed_deletion(budget_id: str, signer: Signer, now_ms: int) -> dict[str, Any]:
    """The record that deletes `budget_id` (its other fields are placeholders)."""
    return sign_budget({"id": budget_id, "scope": "", "metric": "cost_micro_usd", "window": "", "limit": 0,
                        "thresholds": [], "updated_at": now_ms, "deleted": True}, signer)


def decode_verified_budget(data: bytes, verifier: Verifier) -> dict[str, Any]:
    """A budgets-topic value, verified; DecodeError or SignatureError otherwise."""
    budget = codec("Budget").decode(data)
    verify_record("Budget", budget, verifier, f"budget {budget.get('id')!r}")
    return budget


def budget_decoder(verifier: Verifier) -> Callable[[bytes], dict[str, Any]]:
    """For readers that may lack a budget key (`budgets list`, a runtime's local ledger): verify
    when the verifier has keys, else decode only. The worker always verifies."""
    if not verifier.keys:
        return codec("Budget").decode
    return lambda data: decode_verified_budget(data, verifier)


def in_force(records: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The budgets of a snapshot of the topic that are not deleted."""
    return {k: dict(v) for k, v in records.items() if not v.get("deleted")}
