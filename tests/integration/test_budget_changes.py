"""Budgets changed mid-window act on the spend already made, and blocks end with their window,
without any new usage."""

from __future__ import annotations

import time

from tests.helpers import UsageProducer, publish_budget, usage_event
from tokenfuse.kafka.follow import wait_until


def state_of(control, scope):
    return control.snapshot().get(scope, {}).get("state")


def test_raising_a_limit_releases_and_lowering_it_blocks_at_once(settings, worker, control):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=1000)
    usage = UsageProducer(settings)
    usage.send(usage_event("big", 1200))
    usage.send(usage_event("small", 800))
    usage.flush()
    assert wait_until(lambda: state_of(control, "agent:big") == "block", 10)
    assert state_of(control, "agent:small") is None

    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=5000)
    assert wait_until(lambda: state_of(control, "agent:big") == "allow", 10), control.snapshot()

    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=500)
    assert wait_until(lambda: state_of(control, "agent:small") == "block" and
                      state_of(control, "agent:big") == "block", 10), control.snapshot()
    assert control.snapshot()["agent:small"]["spent"] == 800


def test_a_budget_created_mid_window_sees_the_spend_already_made(settings, worker, control):
    usage = UsageProducer(settings)
    usage.send(usage_event("early", 700))
    usage.send(usage_event("marker", 1))
    usage.flush()
    publish_budget(settings, id="probe", scope="agent:marker", metric="input_tokens", window="1h", limit=1)
    assert wait_until(lambda: state_of(control, "agent:marker") == "block", 10)  # the worker has the events
    publish_budget(settings, id="late-budget", scope="team:acme/search", metric="input_tokens", window="day",
                   limit=500)
    assert wait_until(lambda: state_of(control, "team:acme/search") == "block", 10)
    assert control.snapshot()["team:acme/search"]["spent"] == 701


def test_a_block_ends_with_its_window(settings, worker, control):
    publish_budget(settings, id="per-minute", scope="agent:*", metric="input_tokens", window="1m", limit=100)
    usage = UsageProducer(settings)
    usage.send(usage_event("bursty", 150))
    usage.flush()
    assert wait_until(lambda: state_of(control, "agent:bursty") == "block", 10)
    until = control.snapshot()["agent:bursty"]["until"]
    assert until % 60_000 == 0
    remaining = until / 1000 - time.time()
    assert wait_until(lambda: state_of(control, "agent:bursty") == "allow", remaining + 10)
    assert time.time() * 1000 >= until
