"""Fuse against the real broker: what record() puts on the usage topic (key, timestamp, attribution,
run context), and the kill switch reading the real control topic from its beginning."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.sdk_helpers import control_state, publish_control, publish_signed
from tokenfuse.kafka.codec import codec
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions
from tokenfuse.control.signing import Signer, encode_signed

FORGER = Signer("default", b"forger-key-" * 4, "tokenfuse")


def options(tmp_path, **extra) -> FuseOptions:
    return FuseOptions(org="acme", team="search", agent="bot-f", tags={"env": "test"},
                       spool_dir=tmp_path / "spool", **extra)


def raw_usage(settings, count: int) -> list:
    consumer = Consumer({**settings.kafka_config, "group.id": f"{settings.app_id}-raw",
                         "isolation.level": "read_committed"})
    name = settings.topic("usage")
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    messages, deadline = [], time.monotonic() + 30
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                messages.append(msg)
    finally:
        consumer.close()
    return messages


async def test_record_attribution_key_timestamp_and_run_context(settings, tmp_path):
    fuse = Fuse(settings, options(tmp_path))
    with fuse.run("run-sync") as run:
        fuse.record("gpt-4o", 10, 2)
        run.record("gpt-4o", 11, 2, tags={"step": "plan"})
    async with fuse.run("run-async"):
        await asyncio.sleep(0)
        fuse.record("claude-haiku-4-5", 12, 3, cached_tokens=4, cost_micro_usd=99, provider="anthropic", user="u-1")
    fuse.record("gpt-4o", 13, 1)  # outside any run
    assert fuse.flush(30)
    fuse.close()

    messages = raw_usage(settings, 4)
    events = sorted(((codec("UsageEvent").decode(m.value()), m) for m in messages), key=lambda p: p[0]["input_tokens"])
    assert [e["input_tokens"] for e, _ in events] == [10, 11, 12, 13]
    for event, msg in events:
        assert msg.key() == b"bot-f" and msg.timestamp()[1] == event["event_time"]
        assert (event["org"], event["team"], event["agent"]) == ("acme", "search", "bot-f")
    assert [e["run"] for e, _ in events] == ["run-sync", "run-sync", "run-async", None]
    assert [e["tags"] for e, _ in events] == [{"env": "test"}, {"env": "test", "step": "plan"}, {"env": "test"}, {"env": "test"}]
    third = events[2][0]
    assert (third["provider"], third["user"], third["cached_tokens"], third["cost_micro_usd"]) == ("anthropic", "u-1", 4, 99)
    assert len({e["event_id"] for e, _ in events}) == 4


def test_kill_switch_reads_the_topic_from_the_beginning_and_ignores_unsigned_and_forged(settings, tmp_path):
    # Published before the runtime starts: a runtime must see the current state at start.
    publish_control(settings, "agent:bot-f", codec("ControlState").encode(control_state("agent:bot-f")))
    publish_control(settings, "agent:bot-f", encode_signed(control_state("agent:bot-f"), FORGER))
    publish_signed(settings, "team:acme/search", "block")
    released = []
    fuse = Fuse(settings, options(tmp_path), on_release=released.append)
    try:
        assert fuse.kill_switch.wait_ready(30)
        assert fuse.stats["rejected_control"] == 2
        assert set(fuse.kill_switch.states) == {"team:acme/search"}
        with pytest.raises(BudgetExceeded) as info:
            fuse.check()
        assert info.value.scope == "team:acme/search"

        publish_signed(settings, "team:acme/search", "allow")
        assert wait_until(lambda: released == ["team:acme/search"], 10)
        assert fuse.check() == 0
        with fuse.run("run-9"):
            publish_signed(settings, "run:run-9", "block")
            assert wait_until(lambda: "run:run-9" in fuse.kill_switch.states, 10)
            with pytest.raises(BudgetExceeded):
                fuse.check()
        assert fuse.check() == 0  # outside the run
    finally:
        fuse.close()
