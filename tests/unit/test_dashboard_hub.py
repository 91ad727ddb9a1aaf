"""The hub: one computation per channel fanned out to its pages, sent only when it changed."""

from __future__ import annotations

import asyncio
import json

import pytest

from tokenfuse.dashboard.hub import MAX_CHANNELS, Channel, Hub, Sources, TooManyChannels
from tokenfuse.errors import TokenfuseError


class Counting:
    """Channel parts from a value the test sets, counting the computations."""

    def __init__(self):
        self.value, self.calls = 1, 0

    def part(self, channel):
        self.calls += 1
        if self.value is None:
            raise TokenfuseError("history unavailable: sink down")
        return {"page": channel.page, "value": self.value}


def hub_on(live: Counting, spend: Counting) -> Hub:
    return Hub(Sources(live=live.part, spend=spend.part, usage_marks=lambda: (0,)), refresh_seconds=0.2)


async def next_event(stream):
    event = await asyncio.wait_for(anext(stream), 5)
    return event["event"], json.loads(event["data"])


async def test_a_page_gets_both_parts_at_once_then_each_change_once():
    live, spend = Counting(), Counting()
    hub = hub_on(live, spend)
    await hub.start()
    try:
        first, second = hub.subscribe(Channel("now")), hub.subscribe(Channel("now"))
        assert await next_event(first) == ("live", {"page": "now", "value": 1})
        assert await next_event(first) == ("spend", {"page": "now", "value": 1})
        assert [await next_event(second) for _ in range(2)] == [("live", {"page": "now", "value": 1}),
                                                                ("spend", {"page": "now", "value": 1})]
        assert live.calls == 1  # the second page got the first page's computation
        hub.kafka_changed("control")  # nothing changed: nothing sent
        live.value = 2
        hub.kafka_changed("control")
        assert await next_event(first) == ("live", {"page": "now", "value": 2})
        assert await next_event(second) == ("live", {"page": "now", "value": 2})
    finally:
        await hub.stop()


async def test_a_failing_part_is_sent_as_an_error_and_the_stream_stays_open():
    live, spend = Counting(), Counting()
    spend.value = None
    hub = hub_on(live, spend)
    await hub.start()
    try:
        stream = hub.subscribe(Channel("scope", "agent:a"))
        await next_event(stream)
        assert await next_event(stream) == ("spend", {"error": "history unavailable: sink down"})
        spend.value = 3
        hub.kafka_changed("budgets")  # budgets changed: spend is recomputed at once
        assert await next_event(stream) == ("spend", {"page": "scope", "value": 3})
    finally:
        await hub.stop()


async def test_the_last_page_of_a_channel_leaving_forgets_it():
    hub = hub_on(Counting(), Counting())
    stream = hub.subscribe(Channel("scope", "agent:a"))
    await next_event(stream)
    await stream.aclose()
    assert hub.queues == {} and hub.last == {}


async def test_too_many_different_pages_are_refused():
    hub = hub_on(Counting(), Counting())
    streams = [hub.subscribe(Channel("scope", f"agent:{n}")) for n in range(MAX_CHANNELS)]
    for stream in streams:
        await next_event(stream)
    with pytest.raises(TooManyChannels):
        await next_event(hub.subscribe(Channel("scope", "agent:one-more")))
