"""Forecasts and loop detection in the worker, against the real broker, in real time.

Streams are paced (an event every 200 ms) because an early warning is about time: the worker
sees the spend arrive and must warn before the limit is reached. Budgets use the 1-minute
window (half-life 5 s), so a test takes well under a minute.

Event times follow a schedule from the window's start, not the clock at sending: the forecast
runs in event time, so the spend curve it sees and the true breach time are the same on every
run. Stamping events when the loop got round to them made both depend on this process's
scheduling: on a loaded machine a stall after the warning moved the breach seconds later than
any forecast of the stream so far could know. The worker judges warnings on complete seconds
(engine/plugins.py), so how its batches cut the stream does not matter either.
"""

from __future__ import annotations

import time
import urllib.parse

import pytest

from tests.engine_stream import get_json
from tests.helpers import UsageProducer, free_port, publish_budget, read_all, usage_event
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import wait_until

MINUTE = 60_000


def alerts_of(settings, kinds: set[str], until, timeout: float = 5.0) -> list[dict]:
    records = read_all(settings, "alerts", codec("Alert").decode, timeout=timeout,
                       until=lambda r: until([a for _, a, _ in r if a["kind"] in kinds]))
    return [a for _, a, _ in records if a["kind"] in kinds]


def send_paced(usage: UsageProducer, events: list[dict]) -> None:
    """Send each event when its event time comes, at once if this process is behind (the
    schedule's first seconds, a stall): delivery may be late, the spend in event time never moves."""
    for event in events:
        ahead = event["event_time"] / 1000 - time.time()
        if ahead > 0:
            time.sleep(ahead)  # the stream's pace, not a wait for a condition
        usage.send(event)
        usage.flush()


def start_of_fresh_minute() -> int:
    """Wait (at most 45 s) until at least 45 s of the current minute are left; its start."""
    assert wait_until(lambda: time.time() * 1000 % MINUTE < 15_000, 61, interval=0.05)
    now = int(time.time() * 1000)
    return now - now % MINUTE


@pytest.fixture
def web_worker(settings, tmp_path):
    """The worker with its web server on (GET /totals)."""
    web = settings.model_copy(update={"web_port": free_port()})
    proc = RoleProcess("worker", web, tmp_path / "worker.log").start(timeout=90)
    yield proc
    proc.stop()


def test_a_ramping_stream_gets_a_forecast_alert_before_the_block_with_the_breach_in_its_band(
        settings, web_worker, control):
    limit = 30_000
    publish_budget(settings, id="ramp", scope="agent:*", metric="total_tokens", window="1m", limit=limit,
                   forecast={"warn_before_ms": 20_000, "action": "alert"})
    window_start = start_of_fresh_minute()
    events, spent, breach = [], 0, None
    while breach is None:  # tokens per event grow linearly: spend is quadratic in time
        events.append(usage_event("ramper", 10 + 3 * len(events), when_ms=window_start + len(events) * 200))
        spent += events[-1]["input_tokens"]
        breach = events[-1]["event_time"] if spent >= limit else None
    send_paced(UsageProducer(settings), events)
    assert wait_until(lambda: control.snapshot().get("agent:ramper", {}).get("state") == "block", 10)
    forecasts = alerts_of(settings, {"forecast"}, lambda a: len(a) >= 1)
    assert len(forecasts) == 1, forecasts
    alert = forecasts[0]
    assert alert["scope"] == "agent:ramper" and alert["budget_id"] == "ramp"
    assert alert["created_at"] < breach, "the warning came after the breach"
    assert alert["eta_p10"] <= breach <= (alert["eta_p90"] or alert["window_end"]), alert
    assert alert["eta_p10"] <= alert["eta_p50"] and alert["burn_rate_per_hour"] > 0

    status, body = get_json(web_worker.settings, "/totals?" + urllib.parse.urlencode({"scope": "agent:ramper"}))
    assert status == 200
    shown = body["forecasts"]["ramp"]
    assert shown["burn_rate_per_hour"] > 0 and shown["projected"] >= limit
    assert set(shown) == {"burn_rate_per_hour", "projected", "eta_p10", "eta_p50", "eta_p90", "method"}
    assert shown["method"] == "burn rate"


def test_a_stream_that_levels_off_gets_forecast_cleared_and_no_block(settings, worker, control):
    limit = 40_000
    publish_budget(settings, id="calm-down", scope="agent:*", metric="total_tokens", window="1m", limit=limit,
                   forecast={"warn_before_ms": 20_000, "action": "alert"})
    usage = UsageProducer(settings)
    window_start = start_of_fresh_minute()
    # 15 s at ~2000 tokens/s (a breach in ~20 s at that rate), then a trickle for 30 s: the
    # warning clears ~35 s into the window (bench: replayed through the engine), 10 s before the end
    events = [usage_event("surger", 400 if k < 75 else 1, when_ms=window_start + k * 200) for k in range(225)]
    send_paced(usage, events)
    spent = sum(e["input_tokens"] for e in events)
    usage.send(usage_event("marker", 1, team="other"))
    usage.flush()
    kinds = alerts_of(settings, {"forecast", "forecast_cleared"}, lambda a: len(a) >= 2, timeout=10)
    assert [a["kind"] for a in kinds] == ["forecast", "forecast_cleared"], kinds
    assert kinds[1]["alert_id"] == f"calm-down|agent:surger|{window_start}|forecast_cleared|1"
    assert spent < limit and "agent:surger" not in control.snapshot()


def test_a_run_replaying_one_request_is_blocked_at_the_repeat_count_and_its_agents_other_runs_go_on(
        settings, worker, control):
    publish_budget(settings, id="runs", scope="run:*", metric="total_tokens", window="1h", limit=10_000_000,
                   loop={"repeats": 4, "within_ms": 60_000, "action": "block", "per": "run"})
    usage = UsageProducer(settings)

    def call(run: str, fingerprint: str) -> None:
        usage.send(usage_event("looper", 50, run=run, request_fingerprint=fingerprint))

    for n in range(3):
        call("run-a", "same-request")
        call("run-a", f"other-{n}")
        call("run-b", f"b-{n}")
    call("run-b", "b-0")  # a retry in the other run
    for _ in range(4):  # a marker run loops fully: once it is blocked, run-a's three repeats are settled
        call("run-m", "marker")
    usage.flush()
    assert wait_until(lambda: "run:run-m" in control.snapshot(), 10)
    assert "run:run-a" not in control.snapshot()  # three repeats: not yet a loop
    call("run-a", "same-request")
    usage.flush()
    assert wait_until(lambda: control.snapshot().get("run:run-a", {}).get("state") == "block", 10)
    state = control.snapshot()["run:run-a"]
    assert state["budget_id"] == "runs" and state["reason"].startswith("loop:")
    for n in range(5):
        call("run-b", f"b-late-{n}")
    for _ in range(4):
        call("run-n", "marker-2")
    usage.flush()
    assert wait_until(lambda: "run:run-n" in control.snapshot(), 10)
    assert set(control.snapshot()) == {"run:run-a", "run:run-m", "run:run-n"}  # run-b and the agent go on
    loops = alerts_of(settings, {"loop"}, lambda a: len(a) >= 3)
    assert sorted((a["scope"], a["fingerprint"], a["repeats"]) for a in loops) == [
        ("run:run-a", "same-request", 4), ("run:run-m", "marker", 4), ("run:run-n", "marker-2", 4)]
