"""The kill switch's decisions, fed control records directly (its reader thread points at a closed
port on 127.0.0.1, so no broker is involved): only verified states count, expired blocks release,
throttles give a delay, the fail policy applies when the topic cannot be read."""

from __future__ import annotations

import logging
import time

import pytest

from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk.killswitch import KillSwitch
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.control.signing import encode_signed, sign

KEY = b"unit-test-key"
NOWHERE = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit")


def now_ms() -> int:
    return int(time.time() * 1000)


def state(scope: str, kind: str = "block", **fields) -> dict:
    return {"scope": scope, "state": kind, "reason": "over budget", "issued_at": now_ms(),
            "budget_id": "b-1", "spent": 120, "limit": 100, **fields}


@pytest.fixture
def events():
    return {"block": [], "release": []}


@pytest.fixture
def switch(events):
    ks = KillSwitch(NOWHERE, FuseOptions(org="acme", team="search", agent="bot-1", fail_after_s=60),
                    {"default": KEY}, on_block=events["block"].append, on_release=events["release"].append)
    logging.getLogger("tokenfuse.kafka").setLevel(logging.CRITICAL)
    yield ks
    ks.close()


def apply(switch: KillSwitch, record: dict, key: bytes = KEY) -> None:
    switch._apply(record["scope"].encode(), encode_signed(record, key))


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
    apply(switch, block, key=b"not-the-key")  # forged
    tampered = sign(block, KEY)
    tampered["limit"] = 1_000_000
    switch._apply(b"agent:bot-1", codec("ControlState").encode(tampered))  # altered after signing
    switch._apply(b"agent:bot-1", encode_signed(state("agent:bot-9"), KEY))  # valid, but under another key
    switch._apply(b"agent:bot-1", b"not avro at all")
    switch._apply(b"agent:bot-1", None)  # tombstones cannot be signed: ignored
    assert switch.rejected == 5
    assert switch.check() == 0 and switch.states == {}


def test_a_block_expires_by_itself_at_until(switch, events):
    apply(switch, state("agent:bot-1", until=now_ms() + 300))
    with pytest.raises(BudgetExceeded):
        switch.check()
    assert wait_until(lambda: events["release"] == ["agent:bot-1"], 5)  # the reader thread expires it
    assert switch.check() == 0
    apply(switch, state("agent:bot-1", until=now_ms() - 1))  # already past: never blocks
    assert switch.check() == 0


def test_an_older_state_does_not_replace_a_newer_one(switch):
    apply(switch, state("agent:bot-1", "allow", issued_at=now_ms()))
    apply(switch, state("agent:bot-1", "block"))
    apply(switch, state("agent:bot-1", "allow", issued_at=now_ms() - 60_000))  # a replayed old release
    with pytest.raises(BudgetExceeded):
        switch.check()


def test_throttle_returns_the_largest_delay(switch):
    apply(switch, state("org:acme", "throttle", throttle_delay_ms=200))
    apply(switch, state("model:gpt-4o", "throttle", throttle_delay_ms=500))
    assert switch.check() == 200
    assert switch.check(model="gpt-4o") == 500


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_fail_policy_applies_when_the_control_topic_cannot_be_read(policy, caplog):
    ks = KillSwitch(NOWHERE, FuseOptions(agent="bot-1", fail_policy=policy, fail_after_s=0.3), {"default": KEY})
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
