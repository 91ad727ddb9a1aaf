"""The pipeline through faults outside the worker's own crashes (test_engine_recovery.py has
those): the broker restarted mid-stream, the sink stopped while usage flows, and the worker's
disk state lost between two lives. Each on the real broker, the real worker and sink processes
and embedded ClickHouse; the ground truth is what the runtimes recorded."""

from __future__ import annotations

import shutil
import time
from collections import Counter

from tests.engine_stream import (CRASH_TEST_SESSION_TIMEOUT_S, StreamProducer, TotalsIndex, generate, sample_scopes,
                                 totals_mismatches, worker_settings, worker_totals)
from tests.helpers import free_port, publish_budget, unique_settings
from tokenfuse.config import Settings
from tokenfuse.dev.process import RoleProcess
from tokenfuse.errors import BudgetExceeded
from tokenfuse.history.sql import run_sql
from tokenfuse.kafka.follow import wait_until
from tokenfuse.kafka.topics import create_topics
from tokenfuse.sdk import Fuse, FuseOptions

# Totals and budgets are on the calendar month: a test never straddles its bounds in practice,
# while an hour's can fall in the middle of one (a budget would then never be crossed).
WINDOW = "month@UTC"


class Fleet:
    """Runtimes (one Fuse per agent, each with its spool) and what they recorded: the truth."""

    def __init__(self, settings: Settings, agents: list[str], spool_root):
        self.fuses = {a: Fuse(settings, FuseOptions(org="acme", team="ops", agent=a, spool_dir=spool_root / a,
                                                    close_timeout_s=30)) for a in agents}
        self.calls: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()

    def record(self, agent: str, tokens: int = 10) -> None:
        self.fuses[agent].record("gpt-4o-mini", input_tokens=tokens, output_tokens=1)
        self.calls[agent] += 1
        self.tokens[agent] += tokens

    def record_each(self, n: int) -> None:
        for _ in range(n):
            for agent in self.fuses:
                self.record(agent)

    def stat(self, name: str) -> int:
        return sum(f.stats[name] for f in self.fuses.values())

    def flush(self, timeout: float) -> None:
        for agent, fuse in self.fuses.items():
            assert fuse.flush(timeout), f"{agent}: not delivered within {timeout}s: {fuse.stats}"

    def blocked(self, agent: str) -> bool:
        try:
            self.fuses[agent].check()
            return False
        except BudgetExceeded:
            return True

    def truth(self) -> dict[str, tuple[int, int]]:
        return {a: (self.calls[a], self.tokens[a]) for a in self.fuses}

    def close(self) -> None:
        for fuse in self.fuses.values():
            fuse.close()


def in_worker(settings: Settings, fleet: Fleet) -> dict[str, tuple[int, int]]:
    """Per agent, (events, input tokens) in the worker's totals."""
    out = {}
    for agent in fleet.fuses:
        windows = worker_totals([settings], f"agent:{agent}") or {WINDOW: {"events": 0, "input_tokens": 0}}
        out[agent] = (windows[WINDOW]["events"], windows[WINDOW]["input_tokens"])
    return out


def in_history(settings: Settings) -> dict[str, tuple[int, int]]:
    """Per agent, (distinct events, input tokens) in ClickHouse; fails on a duplicate row."""
    rows = run_sql(settings, "SELECT agent, count() AS n, uniqExact(event_id) AS ids, sum(input_tokens) AS input "
                             "FROM usage_events GROUP BY agent")["rows"]
    twice = [(agent, int(n) - int(ids)) for agent, n, ids, _ in rows if int(n) != int(ids)]
    assert not twice, f"duplicate rows in history: {twice}"
    return {agent: (int(ids), int(tokens)) for agent, _, ids, tokens in rows}


def assert_settles(what: str, read, want: dict, timeout: float, *roles: RoleProcess) -> None:
    """Wait until `read()` equals `want`; fail with both and the roles' logs."""
    assert wait_until(lambda: read() == want, timeout=timeout, interval=0.5), \
        f"{what}: {read()} != truth {want}" + "".join(f"\n--- {r.role}\n{r.tail()}" for r in roles)


def test_a_broker_restart_mid_stream_is_spooled_through_and_totals_and_history_stay_exact(private_broker, tmp_path):
    settings = unique_settings(private_broker.bootstrap, tmp_path).model_copy(
        update={"web_port": free_port(), "session_timeout_seconds": CRASH_TEST_SESSION_TIMEOUT_S})
    create_topics(settings)
    sink = RoleProcess("sink", settings, tmp_path / "sink.log").start(timeout=60)
    worker = RoleProcess("worker", settings, tmp_path / "worker.log").start(timeout=90)
    fleet = Fleet(settings, ["alpha", "beta"], tmp_path / "spool")
    try:
        fleet.record_each(100)
        fleet.flush(20)
        private_broker.stop()
        fleet.record_each(300)  # the runtimes go on: their events wait in the spool
        assert wait_until(lambda: fleet.stat("spooled") >= 600, 30), [f.stats for f in fleet.fuses.values()]
        private_broker.start()
        fleet.record_each(100)
        fleet.flush(60)
        assert fleet.stat("replayed") >= 600 and fleet.stat("dropped") == 0
        assert_settles("worker totals", lambda: in_worker(settings, fleet), fleet.truth(), 60, worker)
        assert_settles("history", lambda: in_history(settings), fleet.truth(), 60, sink)
        assert worker.proc.poll() is None and sink.proc.poll() is None, "a role exited instead of resuming"
    finally:
        fleet.close()
        worker.stop()
        sink.stop()


# The sink is down for OUTAGE_S while the fleet keeps calling. Minutes of real downtime differ from
# these seconds only in the size of the backlog the sink finds on its return (the sink reads from
# its committed offsets, the usage topic keeps days, and a stopped sink has left its group, so no
# timeout runs meanwhile): the fleet records about as many events here as a few minutes of a
# slower fleet would.
OUTAGE_S = 20.0


def test_with_the_sink_stopped_budgets_still_block_and_history_is_complete_once_after(settings, tmp_path):
    settings = settings.model_copy(update={"web_port": free_port()})
    limit = 10 * 600  # the runaway crosses it half-way through the outage (10 tokens a call)
    publish_budget(settings, id="cap", scope="agent:runaway", metric="input_tokens", window="month", limit=limit)
    sink = RoleProcess("sink", settings, tmp_path / "sink.log").start(timeout=60)
    worker = RoleProcess("worker", settings, tmp_path / "worker.log").start(timeout=90)
    fleet = Fleet(settings, ["steady", "runaway"], tmp_path / "spool")
    try:
        assert all(f.kill_switch.wait_ready(30) for f in fleet.fuses.values())
        fleet.record_each(300)
        fleet.flush(20)
        assert_settles("history before the stop", lambda: in_history(settings), fleet.truth(), 30, sink)
        sink.stop()
        started, crossed_at, blocked_after = time.monotonic(), None, None
        while time.monotonic() - started < OUTAGE_S:
            fleet.record("steady")
            if crossed_at is None:
                fleet.record("runaway")
                if fleet.tokens["runaway"] >= limit:
                    crossed_at = time.monotonic()
            elif blocked_after is None and fleet.blocked("runaway"):
                blocked_after = time.monotonic() - crossed_at
            time.sleep(0.02)
        assert crossed_at is not None and blocked_after is not None, "the budget did not block during the outage"
        assert blocked_after < 5, f"blocked {blocked_after:.1f}s after the crossing call"
        fleet.flush(20)
        assert_settles("worker totals", lambda: in_worker(settings, fleet), fleet.truth(), 30, worker)
        sink.start(timeout=60)
        assert_settles("history after the restart", lambda: in_history(settings), fleet.truth(), 60, sink)
    finally:
        fleet.close()
        worker.stop()
        sink.stop()


def test_a_worker_whose_disk_state_is_deleted_recovers_it_from_kafka_and_totals_stay_exact(settings, tmp_path):
    s = worker_settings(settings, "w1")
    stream = generate(8_000, s.partitions, s.grace_seconds * 1000, seed=61)
    half = len(stream.sent) // 2
    first_ids = {e["event_id"] for _, e in stream.sent[:half]}
    first, index = TotalsIndex([e for e in stream.counted if e["event_id"] in first_ids]), TotalsIndex(stream.counted)
    scopes = ["global"] + sample_scopes(index, seed=61, per_kind=50)
    worker = RoleProcess("worker", s, tmp_path / "w1.log").start(timeout=90)
    producer = StreamProducer(s)
    try:
        producer.send(stream.sent[:half])
        settled = [x for x in scopes if x in first.by_scope]
        assert wait_until(lambda: not totals_mismatches([s], first, settled, limit=1), timeout=60, interval=0.5), \
            totals_mismatches([s], first, settled) + [worker.tail()]
        worker.kill()
        shutil.rmtree(s.data_dir)  # the machine's disk lost: tables, Faust's data, the token
        worker.start(timeout=90)
        # Duplicates of first-half events come again in the second half: only the recovered
        # dedupe table keeps them out of the totals.
        producer.send(stream.sent[half:])
        assert wait_until(lambda: not totals_mismatches([s], index, scopes, limit=1), timeout=60, interval=0.5)
        problems = totals_mismatches([s], index, scopes)
        assert not problems, "\n".join(problems) + "\n" + worker.tail()
    finally:
        worker.stop()
