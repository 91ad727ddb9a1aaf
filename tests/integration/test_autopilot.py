"""The autopilot role on the real broker: a forecast breach raises the budget within the policy's
bounds before the block; a temporary raise ends with its window; approve mode waits for an
operator; a spike holds its scope; a restart applies nothing twice; the sink keeps the audit
trail in ClickHouse; a bad policy gets file:line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer

from tests.helpers import UsageProducer, publish_budget, usage_event
from tests.integration.test_forecast_pipeline import start_of_fresh_minute
from tokenfuse.autopilot.records import decision_decoder
from tokenfuse.budgets.signed import decode_verified_budget
from tokenfuse.dev.process import RoleProcess
from tokenfuse.history.sql import run_sql
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower, wait_until

POLICY = """\
autopilot:
  - budget: {budget}
    floor: {floor}
    cap: {cap}
    max_step: {step}
    cooldown: 1m
    parent: team-search
    raise: {{margin: 20}}
    mode: {mode}
"""


def tokenfuse(settings, *args):
    return subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", *args], env={**os.environ, **settings.to_env()},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def views(settings):
    """Verified views of the budgets and autopilot topics."""
    verifier = settings.budget_verifier()
    budgets = CompactedTopicFollower(settings, settings.topic("budgets"),
                                     lambda data: decode_verified_budget(data, verifier), ignore_tombstones=True)
    decisions = CompactedTopicFollower(settings, settings.topic("autopilot"), decision_decoder(verifier))
    yield budgets, decisions
    budgets.close()
    decisions.close()


def autopilot(settings, tmp_path, mode: str, budget: str, floor: int, cap: int, step: int) -> RoleProcess:
    policy = tmp_path / "autopilot.yaml"
    policy.write_text(POLICY.format(budget=budget, floor=floor, cap=cap, step=step, mode=mode))
    return RoleProcess("autopilot", settings.model_copy(update={"autopilot_metrics_port": 0}),
                       tmp_path / "autopilot.log", "run", str(policy))


def publish_alert(settings, **alert) -> None:
    producer = Producer(settings.kafka_config)
    producer.produce(settings.topic("alerts"), key=alert["scope"].encode(), value=codec("Alert").encode(alert))
    assert producer.flush(30) == 0


def forecast_alert(budget_id: str, scope: str, projected: int, now: int, n: int = 1) -> dict:
    start = now - now % 3_600_000
    return {"alert_id": f"{budget_id}|{scope}|{start}|forecast|{n}", "kind": "forecast", "scope": scope,
            "budget_id": budget_id, "created_at": now, "window_start": start, "window_end": start + 3_600_000,
            "eta_p10": now + 60_000, "eta_p50": now + 120_000, "projected": projected, "burn_rate_per_hour": 9e3,
            "limit": 1_000, "spent": 900, "metric": "total_tokens"}


def test_a_forecast_breach_is_met_by_a_raise_within_the_bounds_and_the_block_never_comes(
        settings, worker, control, views, tmp_path):
    budgets, decisions = views
    limit = 20_000
    publish_budget(settings, id="team-search", scope="team:acme/search", metric="total_tokens", window="1m",
                   limit=200_000)
    publish_budget(settings, id="ramper", scope="agent:ramper", metric="total_tokens", window="1m", limit=limit,
                   forecast={"warn_before_ms": 30_000, "action": "alert"})
    with autopilot(settings, tmp_path, "auto", "ramper", floor=limit, cap=3 * limit, step=2 * limit):
        usage = UsageProducer(settings)
        start_of_fresh_minute()
        spent, k = 0, 0
        while spent < 2 * limit:  # tokens per event grow linearly: the spend is quadratic in time
            event = usage_event("ramper", 60 + 12 * k)
            usage.send(event)
            usage.flush()
            spent, k = spent + event["input_tokens"], k + 1
            time.sleep(0.1)  # the stream's pace, not a wait for a condition
        usage.send(usage_event("marker", 1, team="other"))
        usage.flush()
        assert wait_until(lambda: any(d.kind == "raise" for d in decisions.snapshot().values()), 10)
    raised = next(d for d in decisions.snapshot().values() if d.kind == "raise")
    assert raised.status == "applied" and raised.old_limit == limit, raised
    assert limit < raised.new_limit <= min(3 * limit, limit + 2 * limit), raised  # the cap and the max step
    assert raised.forecast_projected and raised.expires_at == raised.window_end
    assert budgets.snapshot()["ramper"]["limit"] == raised.new_limit
    assert "agent:ramper" not in control.snapshot(), control.snapshot()["agent:ramper"]  # never blocked
    assert spent > limit  # the first limit would have blocked it


def test_approve_mode_waits_for_the_operator_and_a_restart_applies_nothing_twice(settings, views, tmp_path):
    budgets, decisions = views
    publish_budget(settings, id="team-search", scope="team:acme/search", metric="total_tokens", window="1h",
                   limit=10_000)
    publish_budget(settings, id="agent-a", scope="agent:a", metric="total_tokens", window="1h", limit=1_000)
    alert = forecast_alert("agent-a", "agent:a", projected=2_000, now=int(time.time() * 1000))
    role = autopilot(settings, tmp_path, "approve", "agent-a", floor=500, cap=5_000, step=800)
    with role:
        publish_alert(settings, **alert)
        assert wait_until(lambda: len(decisions.snapshot()) == 1, 15), role.tail()
        proposal = next(iter(decisions.snapshot().values()))
        assert (proposal.kind, proposal.status, proposal.old_limit, proposal.new_limit) == ("raise", "proposed",
                                                                                            1_000, 1_800)
        assert budgets.snapshot()["agent-a"]["limit"] == 1_000  # nothing applied without approval

        approved = tokenfuse(settings, "autopilot", "approve", proposal.id, "--by", "alice")
        assert approved.returncode == 0, approved.stderr
        assert wait_until(lambda: decisions.snapshot()[proposal.id].status == "applied", 15), role.tail()
        assert wait_until(lambda: budgets.snapshot()["agent-a"]["limit"] == 1_800, 10)
        assert decisions.snapshot()[proposal.id].approved_by == "alice"
        again = tokenfuse(settings, "autopilot", "approve", proposal.id)
        assert again.returncode == 1 and "is applied, not a proposal" in again.stderr
        version = budgets.snapshot()["agent-a"]["updated_at"]

    with SinkAndRestart(settings, tmp_path, role) as sink:
        publish_alert(settings, **alert)  # the same alert read again after a restart
        publish_alert(settings, **{**alert, "kind": "spike", "alert_id": "agent-a|agent:a|spike|1"})
        assert wait_until(lambda: any(d.kind == "hold" for d in decisions.snapshot().values()), 15), role.tail()
        publish_alert(settings, **forecast_alert("agent-a", "agent:a", projected=4_000,
                                                 now=int(time.time() * 1000), n=2))
        assert wait_until(lambda: len(decisions.snapshot()) == 3, 15), role.tail()
        refused = [d for d in decisions.snapshot().values() if d.status == "refused"]
        assert len(refused) == 1 and "held: spike alert" in refused[0].reason, refused
        assert budgets.snapshot()["agent-a"]["updated_at"] == version  # applied once, never again

        query = "SELECT decision_id, kind, status, approved_by FROM autopilot_log ORDER BY decided_at, revision"
        assert wait_until(lambda: len(run_sql(settings, query)["rows"]) == 5, 60), sink.tail()
        statuses = [tuple(r[1:]) for r in run_sql(settings, query)["rows"]]
        assert statuses[:3] == [("raise", "proposed", ""), ("raise", "approved", "alice"),
                                ("raise", "applied", "alice")]
        assert sorted(statuses[3:]) == [("hold", "held", ""), ("raise", "refused", "")]
        shown = tokenfuse(settings, "autopilot", "log", "--budget", "agent-a")
        assert shown.returncode == 0 and proposal.id in shown.stdout and "alice" in shown.stdout, shown.stderr
        listed = tokenfuse(settings, "budgets", "list")
        assert "raised 1,000 -> 1,800 until" in listed.stdout and proposal.id in listed.stdout, listed.stdout


def test_a_temporary_raise_returns_to_the_operators_limit_when_its_window_ends(settings, views, tmp_path):
    budgets, decisions = views
    window = 10_000  # 10s tumbling windows: the test sees one end
    publish_budget(settings, id="team-search", scope="team:acme/search", metric="total_tokens", window="10s",
                   limit=10_000)
    publish_budget(settings, id="agent-b", scope="agent:b", metric="total_tokens", window="10s", limit=1_000,
                   description="set by ops")
    with autopilot(settings, tmp_path, "auto", "agent-b", floor=500, cap=5_000, step=4_000):
        assert wait_until(lambda: 1_000 < time.time() * 1000 % window < 4_000, 15)  # early in a window
        now = int(time.time() * 1000)
        start = now - now % window
        publish_alert(settings, **{**forecast_alert("agent-b", "agent:b", projected=2_000, now=now),
                                   "alert_id": f"agent-b|agent:b|{start}|forecast|1", "window_start": start,
                                   "window_end": start + window})
        assert wait_until(lambda: budgets.snapshot()["agent-b"]["limit"] == 2_400, 10)
        assert time.time() * 1000 < start + window and "[autopilot ap-" in budgets.snapshot()["agent-b"]["description"]
        assert wait_until(lambda: budgets.snapshot()["agent-b"]["limit"] == 1_000, 20)
        assert time.time() * 1000 >= start + window  # not before the window ended
    kinds = sorted((d.kind, d.status, d.new_limit) for d in decisions.snapshot().values())
    assert kinds == [("expire", "applied", 1_000), ("raise", "applied", 2_400)]
    assert budgets.snapshot()["agent-b"]["description"].startswith("set by ops [autopilot ")


class SinkAndRestart:
    """The sink, and the autopilot started again (the same consumer group and book)."""

    def __init__(self, settings, tmp_path, role: RoleProcess):
        self.sink = RoleProcess("sink", settings, tmp_path / "sink.log")
        self.role = role

    def __enter__(self) -> RoleProcess:
        self.sink.start()
        self.role.start()
        return self.sink

    def __exit__(self, *exc) -> None:
        self.role.stop()
        self.sink.stop()


def test_an_invalid_policy_is_refused_with_every_problem_at_its_line(settings, tmp_path):
    policy = tmp_path / "autopilot.yaml"
    policy.write_text("autopilot:\n"
                      "  - budget: team-a\n"
                      "    floor: 500\n"
                      "    cap: 100\n"
                      "    max_step: -5\n"
                      "    cooldown: soon\n"
                      "    mode: yolo\n"
                      "    raise: {margin: 10, expire: never}\n")
    result = tokenfuse(settings, "autopilot", "run", str(policy))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"tokenfuse: {policy}: invalid autopilot policy (5 problems):",
        f"  - {policy}:4: autopilot[0].cap: must be at least the floor (500)",
        f"  - {policy}:5: autopilot[0].max_step: must be a positive number, got -5",
        f"  - {policy}:6: autopilot[0].cooldown: must be a duration like 30m, 1h or 1d, got 'soon'",
        f"  - {policy}:7: autopilot[0].mode: 'yolo' is not one of dry-run, approve, auto",
        f"  - {policy}:8: autopilot[0].raise: unknown field 'expire' (did you mean 'expires'?)",
    ]
