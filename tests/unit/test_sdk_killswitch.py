"""The kill switch's decisions, fed control records directly (its reader thread points at a closed
port on 127.0.0.1, so no broker is involved): only verified states count, expired blocks release,
throttles give a delay, the fail policy applies when the topic cannot be read."""

from __future__ import annotations

import itertools
import logging
import time

import pytest

from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk.killswitch import KillSwitch
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.control.signing import Signer, Verifier, encode_signed, sign

KEY = b"unit-test-key-of-at-least-32-bytes"
SIGNER = Signer("default", KEY, "unit")
NOWHERE = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit")
_versions = itertools.count(1)


def now_ms() -> int:
    return int(time.time() * 1000)


def state(scope: str, kind: str = "block", **fields) -> dict:
    """A state of a version higher than every one made before (unless `version` is given)."""
    return {"scope": scope, "state": kind, "reason": "over budget", "issued_at": now_ms(),
            "version": next(_versions), "budget_id": "b-1", "spent": 120, "limit": 100, **fields}


@pytest.fixture
def events():
    return {"block": [], "release": []}


@pytest.fixture
def switch(events):
    ks = KillSwitch(NOWHERE, FuseOptions(org="acme", team="search", agent="bot-1", fail_after_s=60),
                    Verifier({"default": KEY}, "unit"), on_block=events["block"].append, on_release=events["release"].append)
    logging.getLogger("tokenfuse.kafka").setLevel(logging.CRITICAL)
    yield ks
    ks.close()


def apply(switch: KillSwitch, record: dict, signer: Signer = SIGNER) -> None:
    switch._apply(record["scope"].encode(), encode_signed(record, signer))


def test_a_verified_block_raises_for_its_scope_only(switch, events):
    until = now_ms() + 60_000
    apply(switch, state("team:acme/search", until=until))
    with pytest.raises(BudgetExceeded) as info:
        switch.check()
    e = info.value
    assert (e.scope, e.budget_id, e.spent, e.limit, e.until_ms, e.reason) == (
        "team:acme/search", "b-1", 120, 100, until, "over budget")
    assert [s["scope"] for s in events["block"]] == ["team:acme/search"]

    apply(switch, state("team:acme/other"))
    apply(switch, state("agent:bot-2"))
    assert "team:acme/other" not in switch.states and "agent:bot-2" not in switch.states
    apply(switch, state("team:acme/search", "allow"))
    assert switch.check() == 0 and events["release"] == ["team:acme/search"]


def test_per_call_scopes_block_only_calls_that_carry_them(switch):
    apply(switch, state("model:gpt-4o"))
    apply(switch, state("run:r-1"))
    apply(switch, state("tag:env=prod"))
    assert switch.check(model="gpt-4o-mini", run="r-2", tags={"env": "dev"}) == 0
    for call in ({"model": "gpt-4o"}, {"run": "r-1"}, {"tags": {"env": "prod"}}):
        with pytest.raises(BudgetExceeded):
            switch.check(**call)


def test_unsigned_forged_and_mislabelled_states_are_ignored_and_counted(switch):
    block = state("agent:bot-1")
    switch._apply(b"agent:bot-1", codec("ControlState").encode(block))  # unsigned
    apply(switch, block, Signer("default", b"not-the-key-but-also-32-bytes-long", "unit"))  # forged
    tampered = sign(block, SIGNER)
    tampered["limit"] = 1_000_000
    switch._apply(b"agent:bot-1", codec("ControlState").encode(tampered))  # altered after signing
    switch._apply(b"agent:bot-1", encode_signed(state("agent:bot-9"), SIGNER))  # valid, but under another key
    switch._apply(b"agent:bot-1", b"not avro at all")
    switch._apply(b"agent:bot-1", None)  # tombstones cannot be signed: ignored
    apply(switch, block, Signer("default", KEY, "staging"))  # the right key, for another deployment
    assert switch.rejected == 6
    assert switch.check() == 0 and switch.states == {}


def test_a_block_expires_by_itself_at_until(switch, events):
    apply(switch, state("agent:bot-1", until=now_ms() + 300))
    with pytest.raises(BudgetExceeded):
        switch.check()
    assert wait_until(lambda: events["release"] == ["agent:bot-1"], 5)  # the reader thread expires it
    assert switch.check() == 0
    apply(switch, state("agent:bot-1", until=now_ms() - 1))  # already past: never blocks
    assert switch.check() == 0


def test_a_replayed_older_allow_does_not_lift_a_newer_block(switch):
    old_release = state("agent:bot-1", "allow")
    apply(switch, old_release)
    apply(switch, state("agent:bot-1", "block"))
    apply(switch, old_release)  # replayed by whoever can write the topic: a valid signature
    apply(switch, state("agent:bot-1", "allow", version=old_release["version"] + 1))  # older than the block
    with pytest.raises(BudgetExceeded):
        switch.check()


def test_a_replayed_old_block_does_not_re_block_after_a_release(switch, events):
    block = state("agent:bot-1", "block", until=now_ms() + 60_000)
    apply(switch, block)
    apply(switch, state("agent:bot-1", "allow"))
    apply(switch, block)
    assert switch.check() == 0 and len(events["block"]) == 1


def test_a_state_that_disappears_does_not_lift_a_block(switch):
    apply(switch, state("agent:bot-1", "block"))
    switch._apply(b"agent:bot-1", None)  # a forged tombstone, or the record compacted away
    with pytest.raises(BudgetExceeded):
        switch.check()


def test_a_state_signed_with_any_accepted_key_counts_during_a_rotation(events):
    old, new = Signer("old", KEY, "unit"), Signer("new", b"the-new-key-of-at-least-32-bytes!", "unit")
    ks = KillSwitch(NOWHERE, FuseOptions(agent="bot-1", fail_after_s=60),
                    Verifier({"old": old.key, "new": new.key}, "unit"))
    try:
        block = state("agent:bot-1", "block")
        apply(ks, block, old)
        apply(ks, block, new)  # re-signed by `tokenfuse control rotate-key`: same version
        with pytest.raises(BudgetExceeded):
            ks.check()
        assert ks.rejected == 0
    finally:
        ks.close()


def test_throttle_returns_the_largest_delay(switch):
    apply(switch, state("org:acme", "throttle", throttle_delay_ms=200))
    apply(switch, state("model:gpt-4o", "throttle", throttle_delay_ms=500))
    assert switch.check() == 200
    assert switch.check(model="gpt-4o") == 500


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_fail_policy_applies_when_the_control_topic_cannot_be_read(policy, caplog):
    ks = KillSwitch(NOWHERE, FuseOptions(agent="bot-1", fail_policy=policy, fail_after_s=0.3),
                    Verifier({"default": KEY}, "unit"))
    try:
        assert ks.check() == 0  # within fail_after_s of starting
        assert wait_until(lambda: not ks.healthy(), 5)
        with caplog.at_level(logging.WARNING):
            if policy == "closed":
                with pytest.raises(BudgetExceeded) as info:
                    ks.check()
                assert info.value.scope == "control"
            else:
                assert ks.check() == 0
        assert f"fail policy {policy}" in caplog.text
        assert not ks.wait_ready(0)
    finally:
        ks.close()
