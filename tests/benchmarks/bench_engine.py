"""Engine throughput, on demand:  python -m tests.benchmarks.bench_engine [--events N]

Replays N usage events (default 1M) into a fresh usage topic, then measures in the same run:
  1. ceiling  - raw confluent-kafka consume + Avro decode of that topic
  2. baseline - a naive Faust agent: one event at a time, one windowed table (exactly-once)
  3. engine   - `tokenfuse worker` with every scope and tracked window (exactly-once)
  4. floor    - the fastest Faust agent under the same guarantee: batches counted, nothing else
                (what any engine built on a Faust agent is bounded by)
and prints events/s and the ratios engine/baseline, engine/floor and engine/ceiling. Needs the
local broker.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.topics import create_topics, delete_topics

from tests.helpers import free_port


def replay(settings: Settings, n: int) -> None:
    """N events over 50 orgs/200 teams/2000 agents/20000 runs/8 models, 2% duplicates, the last
    minutes of event time, bursts per agent."""
    rng = random.Random(7)
    producer = Producer({**settings.kafka_config, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    enc = codec("UsageEvent").encode
    now = int(time.time() * 1000) - 120_000
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "o3", "gemini-2.5-pro", "a", "b", "c"]
    recent: list[tuple[bytes, bytes, int]] = []
    t0 = time.perf_counter()
    for i in range(n):
        if recent and rng.random() < 0.02:
            key, value, ts = rng.choice(recent)
        else:
            agent = rng.randrange(2000)
            event = {"event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "event_time": now + i * 100_000 // n,
                     "org": f"org-{agent % 50}", "team": f"team-{agent % 200}", "agent": f"agent-{agent}",
                     "run": f"run-{agent}-{rng.randrange(10)}", "user": None, "model": models[agent % 8],
                     "input_tokens": rng.randrange(100, 5000), "output_tokens": rng.randrange(10, 1000),
                     "cost_micro_usd": None, "tags": {"env": "prod" if agent % 3 else "dev"}}
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
    print(f"replayed {n:,} events in {time.perf_counter() - t0:.1f}s", flush=True)


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


def drain_rate(proc_factory, port: int, n: int, counted: str) -> float:
    """Start a worker, time from ready until its counters account for all n events: counted
    (the engine's are settled into the totals, not only ingested), duplicate, late or bad."""
    with proc_factory() as _proc:
        t0 = time.perf_counter()
        while True:
            c = stats(port)
            done = sum(c.get(k, 0) for k in (counted, "duplicates", "late_events", "dlq"))
            if done >= n:
                return n / (time.perf_counter() - t0)
            time.sleep(0.5)


# name, module run as `python -m <module> worker`, extra arguments, the counter of events done
RUNS = (("baseline", "tests.benchmarks.naive_worker", (), "events"),
        ("engine", "tokenfuse.cli.main", (), "settled_events"),
        ("floor", "tests.benchmarks.naive_worker", ("--floor",), "events"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--guarantee", default="exactly_once", choices=["exactly_once", "at_least_once"])
    parser.add_argument("--commit-interval-ms", type=int, default=200)
    parser.add_argument("--only", choices=[name for name, *_ in RUNS], help="skip the other Faust runs")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    logdir = Path(".tokenfuse/bench") / tag
    base = Settings(topic_prefix=f"bench-{tag}", app_id=f"bench-{tag}", partitions=args.partitions,
                    data_dir=logdir, control_key="bench-key", grace_seconds=3600,
                    processing_guarantee=args.guarantee, commit_interval_ms=args.commit_interval_ms)
    create_topics(base)
    try:
        replay(base, args.events)
        ceil = ceiling(base, args.events)
        print(f"ceiling  (confluent consume+decode): {ceil:,.0f} events/s", flush=True)

        rates = {}
        for name, module, extra, counted in RUNS:
            if args.only and args.only != name:
                continue
            port = free_port()
            run = base.model_copy(update={"app_id": f"bench-{tag}-{name}", "web_port": port})
            rates[name] = drain_rate(
                lambda: RoleProcess("worker", run, logdir / f"{name}.log", *extra, module=module), port, args.events,
                counted)
            print(f"{name:8} ({args.guarantee}): {rates[name]:,.0f} events/s", flush=True)
        if len(rates) == len(RUNS):
            print(f"engine / baseline = {rates['engine'] / rates['baseline']:.2f}x   "
                  f"engine / floor = {rates['engine'] / rates['floor']:.2f}   "
                  f"engine / ceiling = {rates['engine'] / ceil:.2f}")
    finally:
        delete_topics(base)
        for suffix, *_ in RUNS:
            delete_topics(base.model_copy(update={"app_id": f"bench-{tag}-{suffix}"}))


if __name__ == "__main__":
    sys.exit(main())
