"""Kill-switch latency under load, on demand:
    python -m tests.benchmarks.bench_latency --rate 3000 [--seconds 60]

One worker, a `run:*` budget of 1,000 tokens that every run crosses on its 10th call, and a
producer paced at `--rate` events/s (set it to ~80% of the engine's throughput measured with
bench_engine). For every crossing it reports the time from the crossing event's arrival (the
broker acknowledged it) to the block being committed (its alert, written in the same Kafka
transaction as the control state, visible to a read_committed consumer): p50, p99 and max.
Needs the local broker.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from tests.helpers import free_port, publish_budget
from tokenfuse.config import Settings
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.topics import create_topics, delete_topics

CALLS_PER_RUN_TO_CROSS = 10


def produce(settings: Settings, rate: float, seconds: float, arrived: dict[str, float]) -> int:
    """Paced usage: 2,000 agents, each working through runs; returns the number of events sent."""
    producer = Producer({**settings.kafka_config, "linger.ms": 5, "enable.idempotence": True})
    encode = codec("UsageEvent").encode
    rng = random.Random(3)
    calls: dict[int, int] = {}

    def delivered(event_id: str):
        def on_delivery(err, _msg) -> None:
            if err is None:
                arrived[event_id] = time.monotonic()
        return on_delivery

    start, sent = time.monotonic(), 0
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate)
        while sent < due:
            agent = rng.randrange(2000)
            calls[agent] = calls.get(agent, 0) + 1
            event = {"event_id": uuid.uuid4().hex, "event_time": int(time.time() * 1000), "org": "acme",
                     "team": f"team-{agent % 20}", "agent": f"agent-{agent}",
                     "run": f"run-{agent}-{calls[agent] // CALLS_PER_RUN_TO_CROSS}", "model": "gpt-4o",
                     "input_tokens": 100, "output_tokens": 0, "cost_micro_usd": 100}
            producer.produce(settings.topic("usage"), key=event["agent"].encode(), value=encode(event),
                             timestamp=event["event_time"], on_delivery=delivered(event["event_id"]))
            sent += 1
        producer.poll(0.001)
    producer.flush()
    return sent


def follow_blocks(settings: Settings, stop: threading.Event, seen: dict[str, float]) -> None:
    """The crossing event id of every block alert, with the time it became visible."""
    consumer = Consumer({**settings.kafka_config, "group.id": uuid.uuid4().hex, "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topic("alerts"), p, OFFSET_END) for p in range(settings.partitions)])
    decode = codec("Alert").decode
    while not stop.is_set():
        for msg in consumer.consume(1000, timeout=0.1):
            if not msg.error():
                alert = decode(msg.value())
                if alert["threshold_percent"] == 100:
                    seen[alert["event_id"]] = time.monotonic()
    consumer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, required=True, help="events per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    logdir = Path(".tokenfuse/bench") / tag
    settings = Settings(topic_prefix=f"bench-{tag}", app_id=f"bench-{tag}-latency", partitions=args.partitions,
                        data_dir=logdir, control_key="bench-key-" + "k" * 32,
                        budget_keys="bench:" + "b" * 32, web_port=free_port())
    create_topics(settings)
    try:
        publish_budget(settings, id="per-run", scope="run:*", metric="total_tokens", window="1h",
                       limit=100 * CALLS_PER_RUN_TO_CROSS)
        with RoleProcess("worker", settings, logdir / "worker.log"):
            arrived: dict[str, float] = {}
            blocked: dict[str, float] = {}
            stop = threading.Event()
            follower = threading.Thread(target=follow_blocks, args=(settings, stop, blocked), daemon=True)
            follower.start()
            time.sleep(1)  # the follower is assigned to the end of the alerts topic
            sent = produce(settings, args.rate, args.seconds, arrived)
            deadline, count = time.monotonic() + 30, -1
            while time.monotonic() < deadline and len(blocked) != count:  # until no new blocks for 2 s
                count = len(blocked)
                time.sleep(2)
            stop.set()
            follower.join()
        latencies = [(blocked[e] - arrived[e]) * 1000 for e in blocked if e in arrived]
        print(f"{sent:,} events at {args.rate:,.0f}/s for {args.seconds:.0f}s, {len(latencies)} runs blocked")
        if latencies:
            print(f"crossing event arrival -> block committed: p50 {percentile(latencies, 0.5):.0f} ms, "
                  f"p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms")
    finally:
        delete_topics(settings)


if __name__ == "__main__":
    sys.exit(main())
