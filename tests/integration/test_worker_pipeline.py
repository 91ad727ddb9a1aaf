"""The worker against the real broker: budgets → block within 2 s of the crossing event,
alerts fire once, bad input goes to the DLQ and the worker goes on."""

from __future__ import annotations

import os
import stat
import time
import urllib.error
import urllib.request

from tests.engine_stream import get_json
from tests.helpers import UsageProducer, free_port, publish_budget, read_all, usage_event
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import wait_until
from tokenfuse.worker.web import token_path, worker_get


def test_runaway_agent_is_blocked_within_two_seconds_and_others_are_not(settings, worker, control):
    publish_budget(settings, id="per-agent", scope="agent:*", metric="total_tokens", window="1h", limit=1000,
                   thresholds=[{"percent": 50, "action": "alert"}, {"percent": 100, "action": "block"}])
    publish_budget(settings, id="team", scope="team:acme/search", metric="total_tokens", window="1h",
                   limit=10_000)
    usage = UsageProducer(settings)
    for _ in range(9):  # 900 tokens each: under the per-agent limit
        for agent in ("calm-1", "calm-2", "runaway"):
            usage.send(usage_event(agent, 100))
    usage.flush()
    usage.send(usage_event("runaway", 100))  # crosses 1000
    usage.flush()
    crossed_at = time.monotonic()
    assert wait_until(lambda: control.snapshot().get("agent:runaway", {}).get("state") == "block", timeout=10)
    latency = time.monotonic() - crossed_at
    assert latency < 2.0, f"block took {latency:.2f}s"

    state = control.snapshot()["agent:runaway"]
    assert (state["budget_id"], state["spent"], state["limit"]) == ("per-agent", 1000, 1000)
    assert state["until"] - state["window_start"] == 3_600_000 and state["until"] > time.time() * 1000
    # The others stay allowed; the team (2800 of 10000) is not blocked.
    assert set(control.snapshot()) == {"agent:runaway"}

    # Every agent passed 50% (900 of 1000): one alert each; only the runaway reached 100%.
    alerts = read_all(settings, "alerts", codec("Alert").decode, until=lambda r: len(r) >= 4, timeout=10)
    assert sorted((a["scope"], a["threshold_percent"]) for _, a, _ in alerts) == [
        ("agent:calm-1", 50), ("agent:calm-2", 50), ("agent:runaway", 50), ("agent:runaway", 100)]
    # More spend fires nothing again in this window.
    usage.send(usage_event("runaway", 500))
    usage.send(usage_event("calm-1", 50))
    usage.flush()
    later = read_all(settings, "alerts", codec("Alert").decode, until=lambda r: len(r) > 4, timeout=3)
    assert len(later) == 4


def test_malformed_messages_go_to_the_dlq_and_the_worker_goes_on(settings, worker, control):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1m", limit=100)
    usage = UsageProducer(settings)
    usage.send_raw(b"x", b"this is not avro at all")
    usage.send_raw(b"y", codec("Budget").encode({"id": "b", "scope": "global", "metric": "cost_micro_usd",
                                                 "window": "day", "limit": 1}))
    usage.send(usage_event("neg", -5))
    usage.send(usage_event("after-bad-input", 150))
    usage.flush()
    assert wait_until(lambda: "agent:after-bad-input" in control.snapshot(), timeout=10)
    dlq = read_all(settings, "dlq", bytes, until=lambda r: len(r) >= 3, timeout=10)
    reasons = sorted(dict(h)["reason"].decode() for _, _, h in dlq)
    assert len(reasons) == 3
    assert any("no Avro single-object header" in r for r in reasons)
    assert any("unknown schema fingerprint" in r for r in reasons)
    assert any("input_tokens is negative" in r for r in reasons)
    assert {k for k, _, _ in dlq} == {b"x", b"y", b"neg"}


def test_duplicate_event_ids_count_once(settings, worker, control):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=300)
    usage = UsageProducer(settings)
    event = usage_event("dup", 200)
    for _ in range(3):  # an SDK retrying or replaying its spool
        usage.send(event)
    usage.flush()
    usage.send(usage_event("dup", 99))  # 299 < 300 if the duplicates counted once
    usage.send(usage_event("marker", 1000))
    usage.flush()
    assert wait_until(lambda: "agent:marker" in control.snapshot(), timeout=10)
    assert "agent:dup" not in control.snapshot()
    usage.send(usage_event("dup", 1))  # exactly 300: blocks
    usage.flush()
    assert wait_until(lambda: "agent:dup" in control.snapshot(), timeout=10)
    assert control.snapshot()["agent:dup"]["spent"] == 300


def test_an_event_dated_in_the_future_goes_to_the_dlq_and_later_real_events_still_count(settings, worker, control):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=300)
    usage = UsageProducer(settings)
    now = int(time.time() * 1000)
    usage.send(usage_event("clock", 100, when_ms=now + 50 * 60_000))  # 50 min ahead: beyond the grace
    usage.send(usage_event("clock", 100, when_ms=now + 30_000))  # a fast clock within the grace: counts
    usage.flush()
    # Real events of the same partition, behind the future-dated one: not late.
    usage.send(usage_event("clock", 100, when_ms=now - 5_000))
    usage.send(usage_event("clock", 100, when_ms=now - 20_000))
    usage.flush()
    assert wait_until(lambda: control.snapshot().get("agent:clock", {}).get("state") == "block", timeout=10)
    assert control.snapshot()["agent:clock"]["spent"] == 300
    dlq = read_all(settings, "dlq", bytes, until=lambda r: len(r) >= 1, timeout=10)
    assert len(dlq) == 1 and "ahead of the worker's clock" in dict(dlq[0][2])["reason"].decode()


def test_a_worker_started_on_a_backlog_is_ready_only_once_it_enforces_it(settings, tmp_path, control):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=5_000)
    usage = UsageProducer(settings)
    for i in range(3_000):  # the backlog: 3,000 calls of other agents, then the runaway's
        usage.send(usage_event(f"calm-{i % 50}", 1))
    for _ in range(60):
        usage.send(usage_event("runaway", 100))
    usage.flush()
    web = settings.model_copy(update={"web_port": free_port()})
    with RoleProcess("worker", web, tmp_path / "worker.log"):
        # Ready means the backlog is settled: the block is already there, no waiting.
        assert control.wait_caught_up(10)
        assert control.snapshot().get("agent:runaway", {}).get("state") == "block"
        _, status = get_json(web, "/stats")
        assert status["ready"] is True and status["counters"]["settled_events"] == 3_060
        _, metrics = worker_get(web, "/metrics")
        assert "tokenfuse_worker_settled_events_total 3060.0" in metrics
        assert "tokenfuse_worker_settle_lag_events 0.0" in metrics


def test_the_worker_pages_answer_only_the_owner_of_its_token_file_on_a_loopback_host(settings, tmp_path):
    web = settings.model_copy(update={"web_port": free_port()})
    with RoleProcess("worker", web, tmp_path / "worker.log"):
        info = token_path(web).stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.getuid()
        token = token_path(web).read_text().strip()
        assert worker_get(web, "/stats")[0] == 200
        for path in ("/stats", "/metrics", "/totals?scope=global"):
            for headers, status in (({}, 401), ({"Authorization": "Bearer " + token[:-1]}, 401),
                                    ({"Authorization": f"Bearer {token}", "Host": "evil.example.com"}, 403)):
                request = urllib.request.Request(f"http://127.0.0.1:{web.web_port}{path}", headers=headers)
                try:
                    urllib.request.urlopen(request, timeout=5)
                    got = 200
                except urllib.error.HTTPError as exc:
                    got = exc.code
                assert got == status, f"{path} {headers}: {got}"
