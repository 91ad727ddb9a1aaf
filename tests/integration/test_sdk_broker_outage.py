"""The SDK against a broker that goes away: record() never waits on it, nothing is lost or doubled,
and the kill switch's fail policy applies while the control topic is unreadable.

Uses the `private_broker` fixture (a broker of this test's own), never the shared one."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.sdk_helpers import read_usage_to_end
from tokenfuse.config import Settings
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions
from tokenfuse.kafka.topics import create_topics


def _settings(bootstrap: str, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:10]
    s = Settings(bootstrap_servers=bootstrap, topic_prefix=f"test-{tag}", partitions=2,
                 data_dir=tmp_path / "data", control_key=f"key-{tag}")
    create_topics(s)
    return s


class Agent(threading.Thread):
    """Records one event per millisecond (an agent between LLM calls) until stopped, timing each call."""

    def __init__(self, fuse: Fuse, name: str):
        super().__init__(daemon=True)
        self.fuse, self.name_, self.durations_ns, self.stop = fuse, name, [], threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            start = time.perf_counter_ns()
            self.fuse.record("gpt-4o", 100 + i, 10, tags={"seq": f"{self.name_}-{i}"})
            self.durations_ns.append(time.perf_counter_ns() - start)
            i += 1
            self.stop.wait(0.001)  # pacing: the agent's own work between calls


def test_broker_outage_record_never_blocks_and_every_event_arrives_once(private_broker, tmp_path):
    settings = _settings(private_broker.bootstrap, tmp_path)
    fuse = Fuse(settings, FuseOptions(agent="bot-out", close_timeout_s=10))
    agents = [Agent(fuse, f"a{n}") for n in range(2)]
    for agent in agents:
        agent.start()
    assert wait_until(lambda: fuse.stats["delivered"] >= 100, 30)

    private_broker.stop()
    assert wait_until(lambda: fuse.stats["spooled"] >= 200, 30), fuse.stats
    private_broker.start()
    assert wait_until(lambda: fuse.stats["replayed"] >= 200, 60), fuse.stats
    for agent in agents:
        agent.stop.set()
        agent.join()
    assert fuse.flush(30)
    assert wait_until(lambda: not fuse._reporter.spool.pending(), 30), fuse.stats
    fuse.close()

    recorded = sum(len(a.durations_ns) for a in agents)
    durations_us = sorted(d / 1000 for a in agents for d in a.durations_ns)
    over_1ms = [d for d in durations_us if d > 1000]
    # The bound is 1 ms per call. On this 2-core machine the broker's JVM stopping and starting (and
    # whatever else CI runs) can take the CPU from an agent thread mid-call (seen: 1 call in ~17k
    # at 1.06 ms, and one at 19.9 ms under a loaded run), which no library can prevent. A call that
    # waited for the broker would take seconds (socket and metadata timeouts), hence the 50 ms cap;
    # the per-call cost itself is measured by tests/benchmarks/bench_sdk.py.
    assert len(over_1ms) <= recorded // 1000, f"{len(over_1ms)} of {recorded} record() calls took > 1 ms: {over_1ms}"
    assert durations_us[-1] < 50_000, f"a record() call took {durations_us[-1]:.0f} µs"
    assert fuse.stats["dropped"] == 0 and fuse.stats["invalid"] == 0

    events = read_usage_to_end(settings)
    ids = [e["event_id"] for e in events]
    assert len(events) == recorded, f"{len(events)} records for {recorded} recorded ({len(set(ids))} distinct)"
    assert len(set(ids)) == recorded
    assert {e["tags"]["seq"] for e in events} == {f"{a.name_}-{i}" for a in agents for i in range(len(a.durations_ns))}


def test_spool_survives_a_runtime_that_exits_while_the_broker_is_down(private_broker, tmp_path):
    settings = _settings(private_broker.bootstrap, tmp_path)
    options = FuseOptions(agent="bot-exit", close_timeout_s=1)
    private_broker.stop()
    first = Fuse(settings, options)
    for i in range(50):
        first.record("gpt-4o", i, 1, tags={"seq": str(i)})
    first.close()  # broker down: what is left must be on disk, not lost
    assert first.stats["spooled"] == 50, first.stats

    private_broker.start()
    second = Fuse(settings, options)  # same spool dir: replays the first runtime's events
    assert wait_until(lambda: second.stats["replayed"] >= 50, 60), second.stats
    second.close()
    assert sorted(int(e["tags"]["seq"]) for e in read_usage_to_end(settings)) == list(range(50))


def test_fail_policy_when_the_control_topic_is_unreadable(private_broker, tmp_path):
    settings = _settings(private_broker.bootstrap, tmp_path)
    fuses = {policy: Fuse(settings, FuseOptions(agent=f"bot-{policy}", fail_policy=policy, fail_after_s=1.5,
                                                spool_dir=tmp_path / policy))
             for policy in ("open", "closed")}
    try:
        for fuse in fuses.values():
            assert fuse.kill_switch.wait_ready(30)
            assert fuse.check() == 0
        private_broker.stop()
        assert wait_until(lambda: not any(f.kill_switch.healthy() for f in fuses.values()), 20)
        assert fuses["open"].check() == 0
        with pytest.raises(BudgetExceeded) as info:
            fuses["closed"].check()
        assert info.value.scope == "control"
        private_broker.start()
        assert wait_until(lambda: all(f.kill_switch.healthy() for f in fuses.values()), 60)
        assert all(f.check() == 0 for f in fuses.values())
    finally:
        for fuse in fuses.values():
            fuse.close()
