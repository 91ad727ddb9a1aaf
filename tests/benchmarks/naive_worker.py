"""The benchmark's baseline: a naive Faust agent, one event at a time, one windowed table.
Run by bench_engine as `python -m tests.benchmarks.naive_worker worker --loglevel info`.

With `--floor`, the fastest agent Faust runs under the same guarantee instead, on the engine's
fetch loop (tokenfuse/worker/faust_adapter/consumer.py): batches of 5000 counted and acked, nothing decoded, no
table. No engine built on a Faust agent can be faster."""

from __future__ import annotations

from collections import Counter

import faust
from tokenfuse.kafka.codec import codec
from tokenfuse.config import Settings
from tokenfuse.worker.faust_adapter.consumer import BatchDeliveryConsumer


def build(settings: Settings, floor: bool = False) -> faust.App:
    app = faust.App(settings.app_id, broker="kafka://" + settings.bootstrap_servers, store="memory://",
                    processing_guarantee=settings.processing_guarantee, topic_partitions=settings.partitions,
                    web_bind="127.0.0.1", web_host="127.0.0.1", web_port=settings.web_port,
                    consumer_auto_offset_reset="earliest", autodiscover=False,
                    broker_commit_interval=settings.commit_interval_ms / 1000)
    usage = app.topic(settings.topic("usage"), key_serializer="raw", value_serializer="raw")
    totals = app.Table("naive-totals", default=int, partitions=settings.partitions).tumbling(3600, expires=7200)
    counters: Counter[str] = Counter()
    decode = codec("UsageEvent").decode

    async def count(stream: faust.StreamT) -> None:
        async for raw in stream:
            event = decode(raw)
            totals[event["agent"]] += event["input_tokens"] + event["output_tokens"]
            counters["events"] += 1

    async def count_only(stream: faust.StreamT) -> None:
        async for events in stream.take_events(5000, within=0.1):
            counters["events"] += len(events)

    app.agent(usage, name="count")(count_only if floor else count)
    if floor:
        app.transport.Consumer = BatchDeliveryConsumer

    @app.page("/stats")
    async def stats(web, request):
        return web.json({"counters": dict(counters)})

    return app


if __name__ == "__main__":
    import sys

    settings = Settings.from_env()
    floor = "--floor" in sys.argv
    sys.argv = [a for a in sys.argv if a != "--floor"]
    faust.Worker(build(settings, floor), loglevel=sys.argv[sys.argv.index("--loglevel") + 1], quiet=True) \
        .execute_from_commandline()
