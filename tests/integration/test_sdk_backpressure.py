"""A burst faster than the broker takes, with the broker up: memory stays bounded (the overflow
goes to the disk spool), the spool is replayed in the background, flush() waits for it, and what
a runtime leaves on disk at close is delivered by the next one: the worker counts every event once."""

from __future__ import annotations

import logging

from tests.engine_stream import counters
from tests.helpers import free_port
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions

BURST = 10_000


def burst(fuse: Fuse, start: int) -> None:
    for i in range(start, start + BURST):
        fuse.record("gpt-4o", 1, 0, tags={"seq": str(i)})


def test_a_burst_spills_to_disk_is_replayed_while_the_broker_is_up_and_counts_once(settings, tmp_path, caplog):
    settings = settings.model_copy(update={"web_port": free_port()})
    worker = RoleProcess("worker", settings, tmp_path / "worker.log").start(timeout=90)
    # Small in-memory bounds so that the burst outruns them many times over.
    options = FuseOptions(agent="bot-burst", queue_max_events=200, kafka_queue_max_messages=200,
                          close_timeout_s=0, spool_dir=tmp_path / "spool")
    try:
        first = Fuse(settings, options)
        burst(first, 0)
        assert first.stats["spooled"] > 0, first.stats  # memory full: record() wrote to disk
        assert first.flush(120), first.stats  # the spool too, replayed in the background
        assert first.stats["replayed"] >= first.stats["spooled"] > 0

        burst(first, BURST)
        with caplog.at_level(logging.WARNING, logger="tokenfuse.sdk.reporter"):
            left = first.close()  # close_timeout_s=0: whatever is not acknowledged now stays on disk
        assert left.in_memory == 0 and left.on_disk > 0, left
        assert f"closing with {left.on_disk} usage events undelivered" in caplog.text

        second = Fuse(settings, options.model_copy(update={"close_timeout_s": 30}))
        assert second.flush(120), second.stats
        second.close()
        # Events purged in flight at close may have reached the broker too: the worker drops repeats.
        assert wait_until(lambda: counters(settings).get("events", 0) >= 2 * BURST, 120, 0.5), \
            f"{counters(settings)}\n{worker.tail()}"
        got = counters(settings)
        assert got["events"] == 2 * BURST and got.get("late_events", 0) == 0, got
    finally:
        worker.stop()
