"""SDK costs, on demand:  python -m tests.benchmarks.bench_sdk [--calls N] [--blocks K]

Measured in one run, against the local broker (127.0.0.1:9092):
  1. record() per call (mean, p99 in µs), broker up, vs the baseline of a bare confluent-kafka
     produce() of pre-encoded bytes, each measured the same way: in a tight loop (a burst, every
     call back to back) and paced (a short GIL-free pause between calls, as an agent waiting on its
     LLM has). Goal: ≤ 10 µs mean, ≤ 100 µs p99.
  2. record() per call inside a run, with a `run:*` budget enforced locally (the call is counted
     in the run's window) vs without any budget, in the same run: the cost of local enforcement.
  3. record() per call with the broker down (an address nothing listens on): events go to the
     disk spool.
  4. Block visibility: a signed block state is produced; another process calling check() in a
     loop reports when it raises (p50, p99 in ms), vs the baseline of a bare confluent-kafka
     consumer process seeing the same record. Goal: ≤ 50 ms p99.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tokenfuse.budgets.store import publish
from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions
from tokenfuse.control.signing import encode_signed
from tokenfuse.kafka.topics import create_topics, delete_topics

PACE_S = 0.0002  # the pause between paced calls (time.sleep releases the GIL, like I/O does)


class Timing(NamedTuple):
    """Per-call µs."""

    mean: float
    p50: float
    p99: float


def summary(durations_ns: list[int]) -> Timing:
    ordered = sorted(durations_ns)
    return Timing(sum(ordered) / len(ordered) / 1000, ordered[len(ordered) // 2] / 1000,
                  ordered[int(len(ordered) * 0.99)] / 1000)


def timed(call, n: int, paced: bool) -> Timing:
    durations, clock = [], time.perf_counter_ns
    for i in range(n):
        start = clock()
        call(i)
        durations.append(clock() - start)
        if paced:
            time.sleep(PACE_S)
    return summary(durations)


def bench_record(settings: Settings, calls: int, tmp: Path) -> None:
    event = {"event_id": str(uuid.uuid4()), "event_time": int(time.time() * 1000), "org": "acme",
             "team": "search", "agent": "bench", "model": "gpt-4o", "provider": "openai",
             "input_tokens": 812, "output_tokens": 95}
    value = codec("UsageEvent").encode(event)
    producer = Producer({**settings.kafka_config, "enable.idempotence": True, "acks": "all",
                         "compression.type": "lz4", "linger.ms": 5})
    topic = settings.topic("usage")

    def bare(i: int) -> None:
        producer.produce(topic, value, b"bench", timestamp=event["event_time"])
        producer.poll(0)

    with Fuse(settings, FuseOptions(agent="bench", spool_dir=tmp / "spool-up")) as fuse:
        def record(i: int) -> None:
            fuse.record("gpt-4o", 812, 95)

        print(f"record() per call, broker up ({calls} calls each)")
        for label, paced, n in (("tight loop", False, calls), ("paced", True, min(calls, 20_000))):
            b_mean, _, b_p99 = timed(bare, n, paced)
            assert producer.flush(60) == 0
            started = time.perf_counter()
            r_mean, _, r_p99 = timed(record, n, paced)
            assert fuse.flush(120)
            # The sender's work (event_id, Avro encode, produce) is off the caller's path but not free.
            drained = n / (time.perf_counter() - started)
            print(f"  {label:10s} record(): mean {r_mean:6.2f} µs  p99 {r_p99:6.2f} µs | bare produce(): "
                  f"mean {b_mean:6.2f} µs  p99 {b_p99:6.2f} µs | ratio mean {r_mean / b_mean:4.2f}  "
                  f"p99 {r_p99 / b_p99:4.2f} | recorded to acknowledged: {drained:,.0f} events/s")
        print(f"  delivered {fuse.stats['delivered']}, spooled {fuse.stats['spooled']}")

    bench_local_counting(settings, calls, tmp)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there
    down = Settings(bootstrap_servers=dead, topic_prefix=settings.topic_prefix, control_key="bench-" + "0" * 32)
    with Fuse(down, FuseOptions(agent="bench", spool_dir=tmp / "spool-down", close_timeout_s=0)) as fuse:
        assert wait_until(lambda: fuse._reporter._broker_down, 10), "the producer never saw the broker down"
        print("record() per call, broker down (spooling)")
        for label, paced, n in (("tight loop", False, calls), ("paced", True, min(calls, 20_000))):
            before = fuse.stats["spooled"]
            r_mean, _, r_p99 = timed(lambda i: fuse.record("gpt-4o", 812, 95), n, paced)
            assert wait_until(lambda: fuse.flush(0).in_memory == 0, 120)  # all on disk
            print(f"  {label:10s} record(): mean {r_mean:6.2f} µs  p99 {r_p99:6.2f} µs  "
                  f"(spooled {fuse.stats['spooled'] - before} of {n})")


def bench_local_counting(settings: Settings, calls: int, tmp: Path) -> None:
    """record() in a run without budgets, then with a run:* budget the runtime enforces locally."""
    results = {}
    for label in ("no budget", "run budget"):
        with Fuse(settings, FuseOptions(agent=f"bench-{label[:2]}", spool_dir=tmp / f"spool-{label[:2]}")) as fuse:
            if label == "run budget":
                publish(settings, [{"id": "bench-run", "scope": "run:*", "metric": "total_tokens", "window": "1h",
                                    "timezone": "UTC", "limit": 10**15, "thresholds": [{"percent": 100, "action": "block"}],
                                    "description": "", "updated_at": 0}], [])
                assert wait_until(lambda: fuse.ledger.watched, 30), "the budget never reached the runtime"
            with fuse.run("bench-run-1"):
                results[label] = [timed(lambda i: fuse.record("gpt-4o", 812, 95), n, paced)
                                  for paced, n in ((False, calls), (True, min(calls, 20_000)))]
            assert fuse.flush(120)
    print("record() inside a run: local counting for a run:* budget vs no budget (same run)")
    for k, label in enumerate(("tight loop", "paced")):
        b, r = results["no budget"][k], results["run budget"][k]
        print(f"  {label:10s} with budget: mean {r.mean:6.2f} µs  p50 {r.p50:6.2f} µs  p99 {r.p99:6.2f} µs | "
              f"no budget: mean {b.mean:6.2f} µs  p50 {b.p50:6.2f} µs  p99 {b.p99:6.2f} µs | "
              f"ratio mean {r.mean / b.mean:4.2f}  p50 {r.p50 / b.p50:4.2f}  p99 {r.p99 / b.p99:4.2f}")


def child(mode: str, bootstrap: str, prefix: str, key: str) -> None:
    """In another process: report (on stdout) the wall time at which each block is seen."""
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, control_key=key)
    if mode == "raw":
        consumer = Consumer({**settings.kafka_config, "group.id": f"bench-{uuid.uuid4().hex}",
                             "isolation.level": "read_committed", "fetch.wait.max.ms": 100,
                             "enable.partition.eof": True})
        topic = settings.topic("control")
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        while True:
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                at_end.add(msg.partition())
                if len(at_end) == len(partitions):
                    at_end.add(-1)  # report once
                    print("ready", flush=True)  # at the end of what was there: new records follow
            elif len(at_end) > len(partitions):
                state = codec("ControlState").decode(msg.value())["state"]
                print(state, time.time(), flush=True)
    fuse = Fuse(settings, FuseOptions(agent="bench-child", spool_dir=Path(tempfile.mkdtemp())))
    assert fuse.kill_switch.wait_ready(30)
    print("ready", flush=True)
    blocked = False
    while True:
        try:
            fuse.check()
            if blocked:
                blocked = False
                print("allow", time.time(), flush=True)
        except BudgetExceeded:
            if not blocked:
                blocked = True
                print("block", time.time(), flush=True)
        time.sleep(0.0001)


def bench_block_latency(settings: Settings, blocks: int) -> dict[str, tuple[float, float]]:
    key = settings.control_key.get_secret_value()
    producer = Producer({**settings.kafka_config, "linger.ms": 0, "acks": "all"})
    results = {}
    for mode in ("raw", "fuse"):
        proc = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.bench_sdk", "--child", mode,
                                 settings.bootstrap_servers, settings.topic_prefix, key],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            latencies = []
            for i in range(blocks):
                for state in ("block", "allow"):
                    record = {"scope": "agent:bench-child", "state": state, "reason": "bench",
                              "issued_at": int(time.time() * 1000), "version": time.time_ns()}
                    sent = time.time()
                    producer.produce(settings.topic("control"), encode_signed(record, settings.control_signer()),
                                     b"agent:bench-child")
                    producer.flush(10)
                    seen_state, seen_at = proc.stdout.readline().split()
                    assert seen_state == state, (seen_state, state)
                    if state == "block":
                        latencies.append((float(seen_at) - sent) * 1000)
            latencies.sort()
            results[mode] = (latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)])
        finally:
            proc.kill()
            proc.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "BOOTSTRAP", "PREFIX", "KEY"))
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    settings = Settings(bootstrap_servers=args.bootstrap, topic_prefix=f"bench-sdk-{uuid.uuid4().hex[:8]}",
                        control_key=f"bench-{uuid.uuid4().hex}")
    create_topics(settings)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench_record(settings, args.calls, Path(tmp))
        results = bench_block_latency(settings, args.blocks)
        (raw50, raw99), (fuse50, fuse99) = results["raw"], results["fuse"]
        print(f"block produced -> visible in another process ({args.blocks} blocks)")
        print(f"  check() raises: p50 {fuse50:6.2f} ms  p99 {fuse99:6.2f} ms | bare consumer sees it: "
              f"p50 {raw50:6.2f} ms  p99 {raw99:6.2f} ms | ratio p50 {fuse50 / raw50:4.2f}  p99 {fuse99 / raw99:4.2f}")
    finally:
        delete_topics(settings)


if __name__ == "__main__":
    main()
