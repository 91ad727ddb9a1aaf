"""Control states in order, on the real broker: a replayed older state never wins in a runtime,
a manual kill outlives the worker's next decision, and a key rotation keeps a block enforced."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import UsageProducer, publish_budget, usage_event
from tests.sdk_helpers import control_state, publish_control
from tokenfuse.config import Settings
from tokenfuse.control.manual import current_states, publish_manual_state
from tokenfuse.control.signing import encode_signed
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions

NEW_KEY = "the-new-control-key-of-32-bytes-or-more"


def changed(settings: Settings, **fields) -> Settings:
    """The settings with `fields` changed, validated as the environment's would be."""
    return Settings(**{**dict(settings), **fields})


def runtime(settings, tmp_path, agent: str, name: str = "rt") -> Fuse:
    fuse = Fuse(settings, FuseOptions(org="acme", team="search", agent=agent, spool_dir=tmp_path / name))
    assert fuse.kill_switch.wait_ready(30)
    return fuse


def blocked(fuse: Fuse) -> bool:
    try:
        fuse.check()
    except BudgetExceeded:
        return True
    return False


def test_a_replayed_old_block_does_not_re_block_after_a_release(settings, tmp_path):
    signer = settings.control_signer()
    block = encode_signed(control_state("agent:freed", "block"), signer)
    publish_control(settings, "agent:freed", block)
    running = runtime(settings, tmp_path, "freed", "running")
    try:
        assert blocked(running)
        publish_control(settings, "agent:freed", encode_signed(control_state("agent:freed", "allow"), signer))
        assert wait_until(lambda: not blocked(running), 10)
        publish_control(settings, "agent:freed", block)  # the old block, replayed byte for byte
        fresh = runtime(settings, tmp_path, "freed", "fresh")
        try:
            assert not blocked(fresh) and not blocked(running)
        finally:
            fresh.close()
    finally:
        running.close()


def test_a_replayed_older_allow_does_not_lift_a_block(settings, tmp_path):
    signer = settings.control_signer()
    release = encode_signed(control_state("agent:victim", "allow"), signer)
    publish_control(settings, "agent:victim", release)
    running = runtime(settings, tmp_path, "victim", "running")
    try:
        publish_control(settings, "agent:victim", encode_signed(control_state("agent:victim", "block"), signer))
        assert wait_until(lambda: blocked(running), 10)
        publish_control(settings, "agent:victim", release)  # the old release, replayed byte for byte
        fresh = runtime(settings, tmp_path, "victim", "fresh")  # reads all three, the replay last
        try:
            assert blocked(fresh) and blocked(running)
        finally:
            fresh.close()
    finally:
        running.close()


def test_a_manual_kill_survives_the_workers_next_decision(settings, worker, control, tmp_path):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=1000)
    usage = UsageProducer(settings)
    usage.send(usage_event("killed", 1500))
    usage.send(usage_event("other", 1500))
    usage.flush()
    assert wait_until(lambda: control.snapshot().get("agent:other", {}).get("state") == "block", 15)
    publish_manual_state(settings, "agent:killed", "block", "incident 7", "1h")
    assert wait_until(lambda: control.snapshot()["agent:killed"].get("source") == "manual", 10)

    # Raising the limit: the worker would now allow both; the manual kill stands.
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=1_000_000)
    assert wait_until(lambda: control.snapshot()["agent:other"]["state"] == "allow", 15)
    newest = current_states(settings)["agent:killed"]
    assert (newest["state"], newest["source"], newest["reason"]) == ("block", "manual", "manual: incident 7")
    fuse = runtime(settings, tmp_path, "killed")
    try:
        assert blocked(fuse)
        publish_manual_state(settings, "agent:killed", "allow", "incident over")
        assert wait_until(lambda: not blocked(fuse), 10)
    finally:
        fuse.close()


def test_a_key_rotation_keeps_a_block_enforced(settings, worker, control, tmp_path):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=100)
    usage = UsageProducer(settings)
    usage.send(usage_event("rotated", 500))
    usage.flush()
    assert wait_until(lambda: control.snapshot().get("agent:rotated", {}).get("state") == "block", 15)
    old = f"{settings.control_key_id}:{settings.control_key.get_secret_value()}"
    # 1. Runtimes accept both keys. 2. Publishers sign with the new one and re-sign what is live.
    both = changed(settings, control_keys=f"new:{NEW_KEY}")
    during = runtime(both, tmp_path, "rotated", "during")
    operator = changed(settings, control_key=NEW_KEY, control_key_id="new", control_keys=old)
    rotated = subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", "control", "rotate-key"],
                             env={**os.environ, **operator.to_env()}, capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("1 control state(s) re-signed with key 'new'")
    # 3. The old key retired: a runtime that only knows the new one still sees the block.
    only_new = changed(settings, control_key=NEW_KEY, control_key_id="new")
    after = runtime(only_new, tmp_path, "rotated", "after")
    try:
        assert blocked(during) and blocked(after)
        state = current_states(only_new)["agent:rotated"]
        assert state["key_id"] == "new" and state["version"] == control.snapshot()["agent:rotated"]["version"]
    finally:
        during.close()
        after.close()


def test_a_state_for_another_deployment_is_refused(settings, tmp_path):
    staging = changed(settings, deployment_id="staging")
    publish_control(settings, "agent:x", encode_signed(control_state("agent:x"), staging.control_signer()))
    fuse = runtime(settings, tmp_path, "x")
    try:
        assert not blocked(fuse) and fuse.stats["rejected_control"] == 1
    finally:
        fuse.close()
    with pytest.raises(BudgetExceeded):
        fuse_staging = runtime(staging, tmp_path, "x", "staging")
        try:
            fuse_staging.check()
        finally:
            fuse_staging.close()
