"""Engine throughput, on demand:  python -m tests.benchmarks.bench_engine [--events N] [--shape fleet]
                                    [--before DIR] [--scale-out]

Replays N usage events (default 1M) into a fresh usage topic, then measures in the same run:
  1. ceiling  - raw confluent-kafka consume + Avro decode of that topic
  2. baseline - a naive Faust agent: one event at a time, one windowed table (exactly-once)
  3. engine   - `tokenfuse worker` with every scope and tracked window (exactly-once)
  4. floor    - the fastest Faust agent under the same guarantee: batches counted, nothing else
                (what any engine built on a Faust agent is bounded by)
and prints events/s and the ratios engine/baseline, engine/floor and engine/ceiling. Needs the
local broker.

With --detectors: budgets on every agent, team, run and org with forecast, loop and spike rules,
request fingerprints in the events, and the engine twice on the same topic: detectors off
(TOKENFUSE_DETECTORS=false: thresholds only) and on. Their ratio is what the detectors cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.dev.process import FAUST_STARTED_LINE, RoleProcess
from tokenfuse.kafka.topics import create_topics, delete_topics

from tests.helpers import free_port, publish_budget

LADDER = [{"percent": 80, "action": "alert"}, {"percent": 100, "action": "block"}]
# Limits far above the bench's spend: every budget is checked, none blocks.
DETECTOR_BUDGETS = [
    {"id": "agents", "scope": "agent:*", "metric": "total_tokens", "window": "1h", "limit": 10**12,
     "forecast": {"warn_before_ms": 1_800_000, "action": "alert"},
     "spike": {"factor": 3.0, "baseline_ms": 3_600_000, "action": "alert"}},
    {"id": "teams", "scope": "team:*", "metric": "cost_micro_usd", "window": "day", "limit": 10**12,
     "forecast": {"warn_before_ms": 1_800_000, "action": "warn"}},
    {"id": "runs", "scope": "run:*", "metric": "total_tokens", "window": "1d", "limit": 10**12,
     "loop": {"repeats": 5, "within_ms": 60_000, "action": "block", "per": "run"}},
    {"id": "orgs", "scope": "org:*", "metric": "cost_micro_usd", "window": "month", "limit": 10**12,
     "forecast": {"warn_before_ms": 86_400_000, "action": "alert"},
     "spike": {"factor": 3.0, "baseline_ms": 3_600_000, "action": "alert"}},
]


def events(n: int, shape: str, now: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """N events over 50 orgs/200 teams/2000 agents/8 models in the last minutes of event time.
    `cardinal`: each call picks one of 10 runs of its agent at random (20,000 runs, every run
    busy in every batch: the most deltas per event). `fleet`: as real agent fleets run, each
    agent works through runs of 20-200 calls, one after another."""
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "o3", "gemini-2.5-pro", "a", "b", "c"]
    run_left: dict[int, int] = {}
    run_no: dict[int, int] = {}
    for i in range(n):
        agent = rng.randrange(2000)
        if shape == "fleet":
            if run_left.get(agent, 0) == 0:
                run_left[agent] = rng.randint(20, 200)
                run_no[agent] = run_no.get(agent, -1) + 1
            run_left[agent] -= 1
            run = f"run-{agent}-{run_no[agent]}"
        else:
            run = f"run-{agent}-{rng.randrange(10)}"
        yield {"event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "event_time": now + i * 100_000 // n,
               "org": f"org-{agent % 50}", "team": f"team-{agent % 200}", "agent": f"agent-{agent}",
               "run": run, "user": None, "model": models[agent % 8],
               "input_tokens": rng.randrange(100, 5000), "output_tokens": rng.randrange(10, 1000),
               "cost_micro_usd": None, "tags": {"env": "prod" if agent % 3 else "dev"},
               "request_fingerprint": f"fp-{rng.randrange(40)}"}


def replay(settings: Settings, n: int, shape: str) -> None:
    """The events of `shape`, 2% of them sent twice (duplicates)."""
    rng = random.Random(7)
    producer = Producer({**settings.kafka_config, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    enc = codec("UsageEvent").encode
    recent: list[tuple[bytes, bytes, int]] = []
    t0 = time.perf_counter()
    for i, event in enumerate(events(n, shape, int(time.time() * 1000) - 120_000, rng)):
        if recent and rng.random() < 0.02:
            key, value, ts = rng.choice(recent)
        else:
            key, value, ts = event["agent"].encode(), enc(event), event["event_time"]
            if len(recent) < 10_000:
                recent.append((key, value, ts))
        while True:
            try:
                producer.produce(settings.topic("usage"), key=key, value=value, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 100_000 == 0:
            producer.poll(0)
    producer.flush()
    print(f"replayed {n:,} {shape} events in {time.perf_counter() - t0:.1f}s", flush=True)


def ceiling(settings: Settings, n: int) -> float:
    consumer = Consumer({**settings.kafka_config, "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    topic = settings.topic("usage")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    decode = codec("UsageEvent").decode
    seen, t0 = 0, time.perf_counter()
    while seen < n:
        for msg in consumer.consume(10_000, timeout=1.0):
            if not msg.error():
                decode(msg.value())
                seen += 1
    elapsed = time.perf_counter() - t0
    consumer.close()
    return n / elapsed


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())["counters"]


def pin(proc: RoleProcess, cpu: int) -> None:
    """Pin every thread of a started process to one core."""
    subprocess.run(["taskset", "-a", "-c", "-p", str(cpu), str(proc.proc.pid)], check=True, capture_output=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain_rate(procs: list[RoleProcess], ports: list[int], n: int, counted: str,
               cpus: list[int] | None = None) -> tuple[float, float]:
    """Start the workers (pinned to `cpus` if given), time from ready until their counters
    account for all n events: counted (the engine's are settled into the totals, not only
    ingested), duplicate, late or bad. Returns events/s and the workers' CPU µs per event (on
    a busy machine the steadier figure to compare two engines with)."""
    with contextlib.ExitStack() as stack:
        for i, proc in enumerate(procs):
            stack.enter_context(proc)
            if cpus:
                pin(proc, cpus[i])
        t0, cpu0 = time.perf_counter(), sum(cpu_seconds(p.proc.pid) for p in procs)
        while True:
            done = 0
            for port in ports:
                c = stats(port)
                done += sum(c.get(k, 0) for k in (counted, "duplicates", "late_events", "dlq"))
            if done >= n:
                cpu = sum(cpu_seconds(p.proc.pid) for p in procs) - cpu0
                return n / (time.perf_counter() - t0), cpu / n * 1e6
            time.sleep(0.2)


@dataclass(frozen=True)
class Run:
    name: str
    module: str  # run as `python -m <module> worker`
    args: tuple[str, ...]
    counted: str  # the counter of events done
    pythonpath: str = ""  # another checkout's streams/ (the engine before a change)
    detectors: bool = True  # TOKENFUSE_DETECTORS


def measure(base: Settings, tag: str, logdir: Path, run: Run, n: int, workers: int = 1,
            cpus: list[int] | None = None) -> tuple[float, float]:
    procs, ports = [], []
    for i in range(workers):
        port = free_port()
        settings = base.model_copy(update={"app_id": f"bench-{tag}-{run.name}-{workers}", "web_port": port,
                                           "data_dir": logdir / f"{run.name}-{workers}-{i}",
                                           "detectors": run.detectors})
        env = {"PYTHONPATH": run.pythonpath} if run.pythonpath else None
        procs.append(RoleProcess("worker", settings, logdir / f"{run.name}-{workers}-{i}.log", *run.args,
                                 module=run.module, extra_env=env, ready_line=FAUST_STARTED_LINE))
        ports.append(port)
    return drain_rate(procs, ports, n, run.counted, cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--shape", choices=["cardinal", "fleet"], default="cardinal")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--guarantee", default="exactly_once", choices=["exactly_once", "at_least_once"])
    parser.add_argument("--commit-interval-ms", type=int, default=200)
    parser.add_argument("--before", type=Path, help="a checkout of the engine to compare with (git worktree add "
                        "DIR <commit>): also runs its worker, as engine-before")
    parser.add_argument("--only", nargs="*", help="run only these (baseline, engine-before, engine, floor)")
    parser.add_argument("--scale-out", action="store_true",
                        help="instead: the engine with one worker pinned to core 0, then two pinned to 0 and 1")
    parser.add_argument("--detectors", action="store_true",
                        help="instead: budgets with forecast/loop/spike rules, the engine with detectors off and on")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    logdir = Path(".tokenfuse/bench") / tag
    base = Settings(topic_prefix=f"bench-{tag}", app_id=f"bench-{tag}", partitions=args.partitions,
                    data_dir=logdir, control_key="bench-key-" + "k" * 32, budget_keys="bench:" + "b" * 32,
                    grace_seconds=3600,
                    processing_guarantee=args.guarantee, commit_interval_ms=args.commit_interval_ms)
    runs = [Run("baseline", "tests.benchmarks.naive_worker", (), "events"),
            Run("engine", "tokenfuse.cli.main", (), "settled_events"),
            Run("floor", "tests.benchmarks.naive_worker", ("--floor",), "events")]
    if args.detectors:
        runs = [Run("engine-thresholds", "tokenfuse.cli.main", (), "settled_events", detectors=False),
                Run("engine-detectors", "tokenfuse.cli.main", (), "settled_events")]
    if args.before:
        runs.insert(1, Run("engine-before", "tokenfuse.cli.main", (), "settled_events",
                           str(args.before.resolve() / "streams")))
    create_topics(base)
    try:
        replay(base, args.events, args.shape)
        ceil = ceiling(base, args.events)
        print(f"ceiling  (confluent consume+decode): {ceil:,.0f} events/s", flush=True)
        for budget in DETECTOR_BUDGETS if args.detectors else ():
            publish_budget(base, thresholds=LADDER, **budget)
        if args.scale_out:
            engine = runs[-2]
            one, _ = measure(base, tag, logdir, engine, args.events, 1, [0])
            print(f"engine, 1 worker on core 0: {one:,.0f} events/s", flush=True)
            two, _ = measure(base, tag, logdir, engine, args.events, 2, [0, 1])
            print(f"engine, 2 workers on cores 0 and 1: {two:,.0f} events/s   2 / 1 = {two / one:.2f}x")
            return
        rates, cpu = {}, {}
        for run in runs:
            if args.only and run.name not in args.only:
                continue
            rates[run.name], cpu[run.name] = measure(base, tag, logdir, run, args.events)
            print(f"{run.name:13} ({args.guarantee}, {args.shape}): {rates[run.name]:,.0f} events/s, "
                  f"{cpu[run.name]:.1f} CPU µs/event", flush=True)
        if len(rates) == 2 and args.detectors:
            on, off = "engine-detectors", "engine-thresholds"
            print(f"detectors on / off = {rates[on] / rates[off]:.2f}x events/s, {cpu[on] / cpu[off]:.2f}x CPU per event")
        if "engine" in rates:
            for other in ("engine-before", "baseline", "floor"):
                if other in rates:
                    print(f"engine / {other} = {rates['engine'] / rates[other]:.2f}x events/s, "
                          f"{cpu[other] / cpu['engine']:.2f}x by CPU per event")
            print(f"engine / ceiling = {rates['engine'] / ceil:.2f}")
    finally:
        delete_topics(base)


if __name__ == "__main__":
    sys.exit(main())
