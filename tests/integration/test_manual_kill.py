"""`tokenfuse kill` / `release` publish signed states that a kill-switch reader sees."""

import os
import subprocess
import sys

from tokenfuse.kafka.follow import CompactedTopicFollower, wait_until
from tokenfuse.control.signing import decode_verified


def tokenfuse(settings, *args):
    return subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", *args], env={**os.environ, **settings.to_env()},
                          capture_output=True, text=True, timeout=60)


def test_kill_then_release_by_hand(settings):
    verifier = settings.control_verifier()
    control = CompactedTopicFollower(settings, settings.topic("control"), lambda b: decode_verified(b, verifier))
    try:
        killed = tokenfuse(settings, "kill", "team:acme/search", "--reason", "incident 42", "--until", "1h")
        assert killed.returncode == 0, killed.stderr
        assert wait_until(lambda: control.snapshot().get("team:acme/search", {}).get("state") == "block", 10)
        state = control.snapshot()["team:acme/search"]
        assert state["reason"] == "manual: incident 42" and state["budget_id"] is None
        assert state["until"] - state["issued_at"] == 3_600_000

        released = tokenfuse(settings, "release", "team:acme/search")
        assert released.returncode == 0, released.stderr
        assert wait_until(lambda: control.snapshot()["team:acme/search"]["state"] == "allow", 10)
    finally:
        control.close()


def test_kill_with_a_bad_scope_prints_one_line(settings):
    result = tokenfuse(settings, "kill", "galaxy:far", "--reason", "x")
    assert result.returncode == 1
    assert result.stderr.startswith("tokenfuse: cannot kill 'galaxy:far'") and "Traceback" not in result.stderr
