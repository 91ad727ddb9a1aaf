"""The worker against hostile usage: scope aliases and oversized events go to the DLQ with their
reason, count toward nothing, and the valid events around them still count."""

from __future__ import annotations

from tests.helpers import UsageProducer, publish_budget, read_all, usage_event
from tokenfuse.kafka.follow import wait_until

BIG = "x" * 100_000

HOSTILE = [  # (event, what its DLQ reason says); each would push agent:victim over its limit if counted
    (usage_event("victim", 1000, org="acme/search", team="x"), "org 'acme/search' may not contain '/'"),
    (usage_event("victim", 1000, org="acme", team="search/x"), "team 'search/x' may not contain '/'"),
    (usage_event("victim", 1000, tags={"env=prod": "x"}), "tag key 'env=prod' may not contain '='"),
    (usage_event("*", 1000), "agent '*' may not contain '*'"),
    (usage_event("victim\x1b[2J", 1000), "may not contain '\\x1b'"),
    (usage_event("victim", 1000, tags={f"t{i}": "v" for i in range(20_000)}), "20000 tags, more than 16"),
] + [(usage_event("victim", 1000, run=BIG, user=BIG, tags={"k": BIG}), "100000 characters")] * 8


def test_aliased_and_oversized_usage_goes_to_the_dlq_and_counts_nowhere(settings, worker, control):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=100)
    usage = UsageProducer(settings)
    for event, _ in HOSTILE:
        usage.send(event)
    usage.flush()
    usage.send(usage_event("marker", 150))
    usage.flush()

    assert wait_until(lambda: "agent:marker" in control.snapshot(), timeout=30)
    assert set(control.snapshot()) == {"agent:marker"}  # no agent:victim, no literal agent:*
    dlq = read_all(settings, "dlq", len, until=lambda r: len(r) >= len(HOSTILE), timeout=30)
    reasons = [dict(h)["reason"].decode() for _, _, h in dlq]
    assert len(reasons) == len(HOSTILE)
    for _, expected in HOSTILE:
        assert any(expected in reason for reason in reasons), (expected, reasons)
    assert max(len(r) for r in reasons) < 300  # the 100 kB values are not echoed in the headers
