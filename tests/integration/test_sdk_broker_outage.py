"""The SDK against a broker that goes away: record() never waits on it, nothing is lost or doubled,
flush() and close() say what is undelivered, run budgets hold locally, and the kill switch's fail
policy applies while the control topic is unreadable.

Uses the `private_broker` fixture (a broker of this test's own), never the shared one."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import publish_budget
from tests.sdk_helpers import read_usage_to_end
from tokenfuse.config import Settings
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions
from tokenfuse.kafka.topics import create_topics


def _settings(bootstrap: str, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:10]
    s = Settings(bootstrap_servers=bootstrap, topic_prefix=f"test-{tag}", partitions=2,
                 data_dir=tmp_path / "data", control_key=f"test-control-key-{uuid.uuid4().hex}",
                 budget_keys=f"test:budget-key-{uuid.uuid4().hex}")
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
    assert fuse.flush(60)  # the spool too: flush waits for its replay
    assert not fuse._reporter.spool.pending(), fuse.stats
    fuse.close()

    recorded = sum(len(a.durations_ns) for a in agents)
    durations_us = sorted(d / 1000 for a in agents for d in a.durations_ns)
    over_1ms = [d for d in durations_us if d > 1000]
    # The bound is 1 ms per call. On this 2-core machine the broker's JVM stopping and starting (and
    # whatever else CI runs) can take the CPU from an agent thread mid-call (seen: 1 call in ~17k
    # at 1.06 ms, and one at 19.9 ms under a loaded run), which no library can prevent. A call that
    # waited for the broker would take seconds (socket and metadata timeouts, ≥ 5 s here), hence
    # the 1 s cap: under a loaded run a call was once descheduled for 150 ms, which is the machine,
    # not a wait on the broker. The per-call cost itself is measured by tests/benchmarks/bench_sdk.py.
    assert len(over_1ms) <= recorded // 100, f"{len(over_1ms)} of {recorded} record() calls took > 1 ms: {over_1ms}"
    assert durations_us[-1] < 1_000_000, f"a record() call took {durations_us[-1]:.0f} µs: it waited on the broker"
    assert fuse.stats["dropped"] == 0 and fuse.stats["invalid"] == 0

    events = read_usage_to_end(settings)
    ids = [e["event_id"] for e in events]
    assert len(events) == recorded, f"{len(events)} records for {recorded} recorded ({len(set(ids))} distinct)"
    assert len(set(ids)) == recorded
    assert {e["tags"]["seq"] for e in events} == {f"{a.name_}-{i}" for a in agents for i in range(len(a.durations_ns))}


def test_flush_reports_undelivered_events_and_a_second_runtime_delivers_them_once(private_broker, tmp_path, caplog):
    settings = _settings(private_broker.bootstrap, tmp_path)
    options = FuseOptions(agent="bot-left", close_timeout_s=1, spool_dir=tmp_path / "spool")
    first = Fuse(settings, options)
    for i in range(100):
        first.record("gpt-4o", i, 1, tags={"seq": str(i)})
    assert first.flush(30).undelivered == 0

    private_broker.stop()
    for i in range(100, 300):
        first.record("gpt-4o", i, 1, tags={"seq": str(i)})
    left = first.flush(2)
    assert not left and left.undelivered == 200 and left.dropped == 0, left
    with caplog.at_level(logging.WARNING, logger="tokenfuse.sdk.reporter"):
        closed = first.close()
    assert (closed.in_memory, closed.on_disk) == (0, 200)
    assert [r.getMessage() for r in caplog.records if "closing with" in r.getMessage()] == [
        f"tokenfuse: closing with 200 usage events undelivered, kept in the spool {tmp_path / 'spool'} "
        "(a runtime using that directory delivers them); 0 dropped since start (spool full)"]

    private_broker.start()
    second = Fuse(settings, options)  # the same spool directory
    assert second.flush(0).on_disk == 200  # it knows what it found
    assert second.flush(60), second.stats
    assert second.close().undelivered == 0
    events = read_usage_to_end(settings)
    assert sorted(int(e["tags"]["seq"]) for e in events) == list(range(300))  # each once, none missing
    assert len({e["event_id"] for e in events}) == 300


def test_a_run_budget_blocks_the_crossing_call_with_the_broker_down(private_broker, tmp_path):
    settings = _settings(private_broker.bootstrap, tmp_path)
    publish_budget(settings, id="per-run", scope="run:*", metric="total_tokens", window="1h", limit=1000)
    fuse = Fuse(settings, FuseOptions(agent="bot-run", close_timeout_s=0, spool_dir=tmp_path / "spool"))
    try:
        assert fuse.wait_ready(30)  # budgets read while the broker was up
        private_broker.stop()
        assert wait_until(lambda: not fuse.kill_switch.healthy() or fuse._reporter._broker_down, 30)
        with fuse.run("run-a"):
            made = 0
            with pytest.raises(BudgetExceeded) as info:
                while made < 10:
                    fuse.check(model="gpt-4o")
                    fuse.record("gpt-4o", 250, 50)
                    made += 1
        assert made == 4  # 1,200 tokens after the fourth call: the fifth is refused
        assert (info.value.scope, info.value.budget_id, info.value.spent, info.value.limit) == ("run:run-a", "per-run", 1200, 1000)
        with fuse.run("run-b"):
            fuse.record("gpt-4o", 900, 0)
            with pytest.raises(BudgetExceeded):  # a declared bound that would cross is refused up front
                fuse.check(model="gpt-4o", max_tokens=101)
            assert fuse.check(model="gpt-4o", max_tokens=100) == 0
    finally:
        fuse.close()


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


class Records(logging.Handler):
    """Every log record of tokenfuse's loggers (SDK and librdkafka's lines) at WARNING or above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def test_a_broker_outage_logs_one_line_when_it_goes_down_and_one_when_it_is_back(private_broker, tmp_path):
    settings = _settings(private_broker.bootstrap, tmp_path)
    handler, logger = Records(), logging.getLogger("tokenfuse")
    logger.addHandler(handler)
    fuse = Fuse(settings, FuseOptions(agent="bot-quiet", fail_after_s=120, spool_dir=tmp_path / "spool"))
    agent = Agent(fuse, "q")
    try:
        assert fuse.kill_switch.wait_ready(30)
        agent.start()
        assert wait_until(lambda: fuse.stats["delivered"] >= 50, 30)
        before = list(handler.lines)
        private_broker.stop()
        # Several seconds of outage: both clients retry their connections many times meanwhile.
        assert wait_until(lambda: fuse.stats["spooled"] >= 3000 and fuse.stats["broker_outages"], 60), fuse.stats
        during = handler.lines[len(before):]
        private_broker.start()
        assert wait_until(lambda: fuse.stats["replayed"] >= 3000 and fuse.kill_switch.healthy(), 60), fuse.stats
        assert wait_until(lambda: any("reachable again" in line for line in handler.lines), 30), handler.lines
        agent.stop.set()
        agent.join()
        assert fuse.flush(30)
    finally:
        agent.stop.set()
        fuse.close()
        logger.removeHandler(handler)
    after = handler.lines[len(before):]
    assert len(during) == 1 and "Kafka unreachable" in during[0], during[:20]
    assert len(after) == 2 and "reachable again" in after[1], after[:20]
    assert fuse.stats["broker_outages"] == 1 and fuse.stats["connection_errors"] >= 10, fuse.stats
