"""Signatures on budgets and control states: keys of at least 32 bytes with ids, the deployment
bound into the MAC, budgets verified and bounded before the worker applies them."""

from __future__ import annotations

import pytest

from tokenfuse.budgets.signed import decode_verified_budget, in_force, sign_budget, signed_deletion
from tokenfuse.config import Settings
from tokenfuse.config.keys import parse_keyring
from tokenfuse.config.roles import require
from tokenfuse.control.signing import Signer, Verifier, decode_verified, encode_signed, next_version
from tokenfuse.errors import ConfigError, SignatureError
from tokenfuse.kafka.codec import codec
from tokenfuse.worker.engine.rules import BudgetIndex

KEY = b"a-budget-key-of-at-least-32-bytes"
SIGNER = Signer("ops-1", KEY, "prod")
VERIFIER = Verifier({"ops-1": KEY}, "prod")
BUDGET = {"id": "b", "scope": "agent:*", "metric": "total_tokens", "window": "1h", "timezone": "UTC",
          "limit": 1000, "thresholds": [{"percent": 100, "action": "block"}], "description": "", "updated_at": 1}


def encoded(budget: dict, signer: Signer = SIGNER) -> bytes:
    return codec("Budget").encode(sign_budget(budget, signer))


def test_a_signed_budget_verifies_and_keeps_its_fields():
    budget = decode_verified_budget(encoded(BUDGET), VERIFIER)
    assert {k: budget[k] for k in BUDGET} == BUDGET and budget["key_id"] == "ops-1"


@pytest.mark.parametrize("data, message", [
    (codec("Budget").encode(BUDGET), "unsigned budget 'b'"),
    (encoded(BUDGET, Signer("ops-1", b"a-forger-key-also-32-bytes-long!!", "prod")), "forged budget"),
    (encoded(BUDGET, Signer("ops-9", KEY, "prod")), "unknown key 'ops-9'"),
    (encoded(BUDGET, Signer("ops-1", KEY, "staging")), "forged budget"),
])
def test_unsigned_forged_and_foreign_budgets_are_refused(data, message):
    with pytest.raises(SignatureError, match=message):
        decode_verified_budget(data, VERIFIER)


def test_a_budget_altered_after_signing_is_refused():
    tampered = sign_budget(BUDGET, SIGNER)
    tampered["limit"] = 10**12
    with pytest.raises(SignatureError, match="forged"):
        decode_verified_budget(codec("Budget").encode(tampered), VERIFIER)


def test_a_signed_deletion_removes_the_budget_from_those_in_force():
    deletion = decode_verified_budget(codec("Budget").encode(signed_deletion("b", SIGNER, 5)), VERIFIER)
    assert deletion["deleted"] and in_force({"b": deletion, "c": {**BUDGET, "id": "c"}}) == {
        "c": {**BUDGET, "id": "c"}}


@pytest.mark.parametrize("percent", [0, -5, 1001])
def test_the_worker_refuses_thresholds_outside_1_to_1000_percent(percent):
    index = BudgetIndex([{**BUDGET, "thresholds": [{"percent": percent, "action": "block"}]}])
    assert index.for_scope("agent:x") == [] and "outside 1..1000" in index.rejected["b"]


def test_a_control_state_of_another_deployment_does_not_verify():
    state = {"scope": "agent:x", "state": "block", "issued_at": 1, "version": 7}
    data = encode_signed(state, Signer("default", KEY, "staging"))
    assert decode_verified(data, Verifier({"default": KEY}, "staging"))["version"] == 7
    with pytest.raises(SignatureError, match="another key or deployment"):
        decode_verified(data, Verifier({"default": KEY}, "prod"))


def test_a_state_with_its_version_changed_after_signing_does_not_verify():
    signed = codec("ControlState").decode(encode_signed(
        {"scope": "agent:x", "state": "allow", "issued_at": 1, "version": 7}, SIGNER))
    with pytest.raises(SignatureError, match="forged"):
        decode_verified(codec("ControlState").encode({**signed, "version": 10**15}), VERIFIER)


def test_the_next_version_outranks_the_clock_and_every_version_known():
    assert next_version(1_000) == 1_000
    assert next_version(1_000, 5_000) == 5_001  # a publisher whose clock lags still goes forward
    assert next_version(9_000, 5_000, 7_000) == 9_000


def test_key_lists_need_ids_and_32_byte_secrets():
    assert parse_keyring(f"a:{'x' * 32}, b:{'y' * 40}") == {"a": b"x" * 32, "b": b"y" * 40}
    for text, message in (("a:short", "5 bytes; at least 32"), ("nocolon", "not id:secret"),
                          (f"a:{'x' * 32},a:{'y' * 32}", "appears twice")):
        with pytest.raises(ValueError, match=message):
            parse_keyring(text)


def test_a_short_budget_key_is_a_start_up_error_that_never_shows_the_secret(monkeypatch):
    monkeypatch.setenv("TOKENFUSE_BUDGET_KEYS", "ops:hunter2")
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert "TOKENFUSE_BUDGET_KEYS" in str(info.value.problems) and "hunter2" not in str(info.value.problems)


def test_the_worker_needs_a_budget_key_and_signs_with_the_first_of_the_list():
    with pytest.raises(ConfigError, match="TOKENFUSE_BUDGET_KEYS"):
        require(Settings(control_key="k" * 32), "worker")
    settings = Settings(budget_keys=f"new:{'n' * 32},old:{'o' * 32}", topic_prefix="acme-prod")
    assert settings.budget_signer() == Signer("new", b"n" * 32, "acme-prod")
    assert set(settings.budget_verifier().keys) == {"new", "old"}


def test_control_readers_accept_the_signing_key_and_the_further_listed_ones():
    settings = Settings(control_key="c" * 32, control_key_id="new", control_keys=f"old:{'o' * 32}",
                        deployment_id="eu-1")
    verifier = settings.control_verifier()
    assert verifier.keys == {"old": b"o" * 32, "new": b"c" * 32} and verifier.deployment == "eu-1"


def test_applying_after_a_budget_key_rotation_re_signs_unchanged_budgets():
    from tokenfuse.budgets.store import plan_apply

    current = {"b": sign_budget(BUDGET, SIGNER)}
    assert plan_apply(current, [BUDGET], key_id="ops-1").unchanged == ["b"]
    assert plan_apply(current, [BUDGET], key_id="ops-2").changed == ["b"]
