"""Backlog awareness against the real broker and worker: the worker's heartbeats keep a runtime's
shared scopes seeing; a stalled (SIGSTOP) or stopped worker makes check() apply the fail policy
after TOKENFUSE_MAX_BLIND, and a live one never does."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions

MAX_BLIND_S = 6.0  # heartbeats every second and two hops of committed offsets: a live worker is ~2-3 s behind


def refused(fuse: Fuse) -> bool:
    try:
        fuse.check(model="gpt-4o")
    except BudgetExceeded as refusal:
        assert refusal.scope == "control" and "not settled" in refusal.reason
        return True
    return False


def test_a_live_worker_keeps_a_closed_runtime_going_and_a_stalled_or_stopped_one_fails_it_closed(
        settings, worker, tmp_path):
    options = FuseOptions(org="acme", team="search", agent="bot-blind", fail_policy="closed",
                          max_blind=MAX_BLIND_S, spool_dir=tmp_path / "spool")
    with Fuse(settings, options) as fuse:
        assert fuse.wait_ready(30)
        assert wait_until(lambda: fuse.kill_switch.backlog.partitions > 0, 15), "no heartbeat from the worker"
        deadline = time.monotonic() + 2 * MAX_BLIND_S  # longer than max_blind: heartbeats keep it seeing
        while time.monotonic() < deadline:
            fuse.record("gpt-4o", 100, 10)  # usage flows through the worker meanwhile
            assert not refused(fuse), fuse.kill_switch.backlog.describe(int(time.time() * 1000))
            time.sleep(0.05)

        os.kill(worker.proc.pid, signal.SIGSTOP)  # stalled: alive, settles nothing
        try:
            stalled, blind_s = time.monotonic(), fuse.kill_switch.backlog.blind_for_ms(int(time.time() * 1000)) / 1000
            assert wait_until(lambda: refused(fuse), MAX_BLIND_S + 5)
            # not before the configured time (less what it was blind already; checked once a second)
            assert time.monotonic() - stalled >= MAX_BLIND_S - blind_s - 1.1
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        assert wait_until(lambda: not refused(fuse), 20), "the worker caught up: calls go ahead again"

        worker.stop()  # stopped: the last heartbeat stays in the topic and ages
        assert wait_until(lambda: refused(fuse), MAX_BLIND_S + 5)


def test_an_open_runtime_only_warns_when_the_worker_is_blind(settings, tmp_path, caplog):
    options = FuseOptions(agent="bot-open", max_blind=1.0, spool_dir=tmp_path / "spool")
    with Fuse(settings, options) as fuse:  # no worker at all: blind since start
        assert fuse.wait_ready(30)
        assert wait_until(lambda: fuse.kill_switch.backlog.blind, 10)
        assert fuse.check(model="gpt-4o") == 0
        assert "fail policy open: allowing calls" in caplog.text
