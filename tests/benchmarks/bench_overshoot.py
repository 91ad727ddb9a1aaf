"""Overshoot of a shared budget, with leases against the kill switch alone, on demand:
    python -m tests.benchmarks.bench_overshoot [--agents 3] [--trials 5] [--restart]

One real worker on the local broker; per trial a new team scope with a budget of 50,000 input
tokens (block at 100%) and N agent processes of that team calling check() + record(500 tokens) in
a loop, paced (one call per 1 ms, per 100 ms) or unpaced, until check() refuses for good. Each
mode runs with leases (TOKENFUSE_LEASES=true) and, as the baseline in the same run, without
(the worker's kill switch alone). Per trial and in aggregate it reports:

- the overshoot: tokens and calls recorded beyond the limit, against the bound docs/leases.md
  states for leases (N x one call, single-threaded agents);
- crossing -> check() raising: the crossing is the call that brings the team's total to the limit
  (merged from every process's call times); the time until check() raised BudgetExceeded in the
  process that made it, and in the other processes (0 when refused before the crossing: a lease
  refuses ahead of it). With leases a trial may end below the limit (unused slices of the last
  leases): its crossing is then the last call made.

`--restart` adds leased trials paced at 100 ms with the worker SIGKILLed one second in and a new
worker taking over (a new app id: all it knows of the grants is the leases topic; the agents wait
for leases meanwhile). Unpaced baseline trials stop after 3 s: the
flood they make would otherwise keep the worker busy for minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIMIT = 50_000
CALL = 500
MODES = {"paced 1 ms": 0.001, "paced 100 ms": 0.1, "unpaced": 0.0}


@dataclass(frozen=True)
class Task:
    team: str
    leases: bool
    pause_s: float
    seconds: float


def agent(index: int, env: dict[str, str], spool: str, tasks: Any, ready: Any, go: Any, results: Any) -> None:
    """One agent process: per task, a Fuse of the task's team, then the loop, then what happened."""
    os.environ.update(env)
    from tokenfuse.config import Settings
    from tokenfuse.errors import BudgetExceeded, LeaseUnavailable
    from tokenfuse.sdk import Fuse, FuseOptions

    settings = Settings.from_env()
    while (task := tasks.get()) is not None:
        options = FuseOptions(org="acme", team=task.team, agent=f"bench-{index}", leases=task.leases, max_blind=0,
                              spool_dir=Path(spool) / f"{task.team}-{index}", close_timeout_s=2)
        fuse = Fuse(settings, options)
        fuse.wait_ready(30)
        ready.put(index)
        go.wait()
        times, refused_at, reason, waits = array("d"), None, "", 0
        deadline = time.time() + task.seconds
        while time.time() < deadline:
            try:
                fuse.check(model="gpt-4o")
            except LeaseUnavailable:
                waits += 1
                continue
            except BudgetExceeded as refusal:
                refused_at, reason = time.time(), refusal.reason
                break
            fuse.record("gpt-4o", CALL, 0)
            times.append(time.time())
            if task.pause_s:
                time.sleep(task.pause_s)
        results.put((index, times.tobytes(), refused_at, reason[:60], waits))
        fuse.close()


@dataclass
class Trial:
    mode: str
    leases: bool
    total: int
    overshoot: int
    crossing_ms: float | None
    others_ms: list[float]
    waits: int
    reached: bool

    def line(self, agents: int) -> str:
        bound = f"bound {agents * CALL:>6}" if self.leases else "no bound   "
        held = "" if not self.leases else ("  ok" if self.overshoot <= agents * CALL else "  OVER THE BOUND")
        raise_s = "    -" if self.crossing_ms is None else f"{self.crossing_ms:7.1f}"
        others = "    -" if not self.others_ms else f"{statistics.median(self.others_ms):7.1f}"
        return (f"  {self.mode:<13} {'leases' if self.leases else 'switch':<7} spent {self.total:>9} "
                f"overshoot {self.overshoot:>9} tokens {max(0, self.overshoot) // CALL:>6} calls  {bound}{held}  "
                f"raise ms: crossing {raise_s}, others {others}  lease waits {self.waits}"
                + ("" if self.reached else "  (ended below the limit)"))


def measure(mode: str, leases: bool, outcomes: list[tuple]) -> Trial:
    calls = sorted((t, index) for index, raw, *_ in outcomes for t in array("d", raw))
    refused = {index: at for index, _, at, _, _ in outcomes}
    total, crossing = 0, None
    for t, index in calls:
        total += CALL
        if crossing is None and total >= LIMIT:
            crossing = (t, index)
    reached = crossing is not None
    if crossing is None and calls:
        crossing = calls[-1]
    crossing_ms, others = None, []
    if crossing is not None:
        at, who = crossing
        for index, when in refused.items():
            if when is None:
                continue
            latency = max(0.0, (when - at) * 1000)
            if index == who:
                crossing_ms = latency
            else:
                others.append(latency)
    return Trial(mode, leases, total, total - LIMIT, crossing_ms, others, sum(o[4] for o in outcomes), reached)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Bench:
    def __init__(self, agents: int):
        from tests.helpers import unique_settings
        from tokenfuse.dev.process import RoleProcess
        from tokenfuse.kafka.topics import create_topics

        self.folder = Path(tempfile.mkdtemp(prefix="bench-overshoot-"))
        self.settings = unique_settings(os.environ.get("TOKENFUSE_TEST_BOOTSTRAP", "127.0.0.1:9092"), self.folder)
        create_topics(self.settings)
        self.worker = RoleProcess("worker", self.settings, self.folder / "worker.log").start(timeout=120)
        self.takeovers = 0
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.results, self.go = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.tasks = [ctx.Queue() for _ in range(agents)]
        self.procs = [ctx.Process(target=agent, args=(i, self.settings.to_env(), str(self.folder / "spool"), q,
                                                      self.ready, self.go, self.results), daemon=True)
                      for i, q in enumerate(self.tasks)]
        for p in self.procs:
            p.start()

    def trial(self, mode: str, leases: bool, seconds: float, restart_after_s: float | None = None) -> Trial:
        from tests.helpers import publish_budget
        from tokenfuse.dev.process import RoleProcess

        team = f"t-{uuid.uuid4().hex[:8]}"
        publish_budget(self.settings, id=f"cap-{team}", scope=f"team:acme/{team}", metric="input_tokens",
                       window="1d", limit=LIMIT)
        self.go.clear()
        for q in self.tasks:
            q.put(Task(team, leases, MODES[mode], seconds))
        for _ in self.tasks:
            self.ready.get(timeout=120)
        time.sleep(0.5 if leases else 0.0)  # the first leases are fetched ahead, as a running agent has them
        self.go.set()
        if restart_after_s is not None:
            time.sleep(restart_after_s)
            self.worker.kill()
            started = time.monotonic()
            self.takeovers += 1
            standby = self.settings.model_copy(update={"app_id": f"{self.settings.app_id}-{self.takeovers}"})
            self.worker = RoleProcess("worker", standby, self.folder / f"worker-{self.takeovers}.log").start(timeout=180)
            print(f"    worker SIGKILLed {restart_after_s:.0f} s in, another ready after {time.monotonic() - started:.1f} s")
        outcomes = [self.results.get(timeout=seconds + 300) for _ in self.tasks]
        return measure(mode + (" +kill" if restart_after_s else ""), leases, outcomes)

    def close(self) -> None:
        from tokenfuse.kafka.topics import delete_topics

        for q in self.tasks:
            q.put(None)
        for p in self.procs:
            p.join(30)
        self.worker.stop()
        delete_topics(self.settings)
        shutil.rmtree(self.folder, ignore_errors=True)


def summary(trials: list[Trial], agents: int) -> None:
    print("\naggregate (p50 / p99 over trials):")
    for mode in [m for m in MODES] + [m + " +kill" for m in MODES]:
        for leases in (True, False):
            chosen = [t for t in trials if t.mode == mode and t.leases == leases]
            if not chosen:
                continue
            over = [t.overshoot for t in chosen]
            crossing = [t.crossing_ms for t in chosen if t.crossing_ms is not None]
            others = [ms for t in chosen for ms in t.others_ms]
            held = sum(t.overshoot <= agents * CALL for t in chosen)
            fmt = lambda v: "-" if not v else f"{percentile(v, 0.5):.1f} / {percentile(v, 0.99):.1f}"  # noqa: E731
            print(f"  {mode:<18} {'leases' if leases else 'switch':<7} overshoot tokens p50 {percentile(over, 0.5):>9} "
                  f"max {max(over):>9}; within {agents * CALL} in {held}/{len(chosen)} trials; "
                  f"raise ms crossing {fmt(crossing)}, others {fmt(others)}")
    for mode in MODES:
        lease = [t.overshoot for t in trials if t.mode == mode and t.leases]
        switch = [t.overshoot for t in trials if t.mode == mode and not t.leases]
        if lease and switch and percentile(switch, 0.5) > 0:
            print(f"  {mode}: median overshoot with leases / kill switch alone = "
                  f"{max(0, percentile(lease, 0.5))} / {percentile(switch, 0.5)} = "
                  f"{max(0, percentile(lease, 0.5)) / percentile(switch, 0.5):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--restart", action="store_true", help="add a leased trial with the worker SIGKILLed mid-run")
    args = parser.parse_args()
    bench = Bench(args.agents)
    trials: list[Trial] = []
    try:
        # Leased trials first, then the baseline with the unpaced flood last of it (it leaves the
        # worker behind), then the takeovers (a new worker catches up on the whole usage topic).
        plan = [(mode, True, 60.0) for mode in MODES] + [("paced 100 ms", False, 20.0), ("paced 1 ms", False, 20.0),
                                                          ("unpaced", False, 3.0)]
        for mode, leases, seconds in plan:
            for _ in range(args.trials if mode != "unpaced" or leases else 1):
                trials.append(bench.trial(mode, leases, seconds))
                print(trials[-1].line(args.agents), flush=True)
        for _ in range(2 if args.restart else 0):
            trials.append(bench.trial("paced 100 ms", True, 600.0, restart_after_s=1.0))
            print(trials[-1].line(args.agents), flush=True)
        summary(trials, args.agents)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
