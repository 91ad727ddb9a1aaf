"""Local enforcement against the real broker: budgets read from the budgets topic, the runtime's
own count decides at the call, with no worker running (the worker's view would come later), and
it combines with the kill switch's states."""

from __future__ import annotations

import pytest

from tests.helpers import publish_budget
from tests.sdk_helpers import publish_signed
from tokenfuse.errors import BudgetExceeded
from tokenfuse.kafka.follow import wait_until
from tokenfuse.sdk import Fuse, FuseOptions
from tokenfuse.worker.engine.rules import DEFAULT_THROTTLE_DELAY_MS


def calls_until_refused(fuse: Fuse, tokens: int, limit: int = 100) -> tuple[int, BudgetExceeded]:
    """check() then record() in a loop, as an agent does: how many calls went ahead, and the refusal."""
    for made in range(limit):
        try:
            fuse.check(model="gpt-4o")
        except BudgetExceeded as refusal:
            return made, refusal
        fuse.record("gpt-4o", tokens, 0)
    raise AssertionError(f"never refused after {limit} calls")


def test_an_agent_this_runtime_alone_reports_is_enforced_locally_and_a_shared_one_is_not(settings, tmp_path):
    publish_budget(settings, id="per-agent", scope="agent:*", metric="total_tokens", window="1h", limit=1000)
    sole = Fuse(settings, FuseOptions(agent="bot-sole", local_scopes="agent", spool_dir=tmp_path / "sole"))
    shared = Fuse(settings, FuseOptions(agent="bot-shared", spool_dir=tmp_path / "shared"))
    try:
        assert sole.wait_ready(30) and shared.wait_ready(30)
        made, refusal = calls_until_refused(sole, 300)
        assert made == 4  # 1,200 after the fourth: the fifth is refused, nothing beyond the crossing call
        assert (refusal.scope, refusal.budget_id, refusal.spent, refusal.limit) == ("agent:bot-sole", "per-agent", 1200, 1000)
        for _ in range(5):  # other processes may report this agent too: only the worker can decide
            assert shared.check(model="gpt-4o") == 0
            shared.record("gpt-4o", 300, 0)
    finally:
        sole.close()
        shared.close()


def test_local_and_worker_states_combine_and_the_most_severe_wins(settings, tmp_path):
    publish_budget(settings, id="slow-run", scope="run:*", metric="input_tokens", window="1h", limit=1000,
                   thresholds=[{"percent": 50, "action": "throttle"}, {"percent": 100, "action": "block"}])
    with Fuse(settings, FuseOptions(org="acme", team="search", agent="bot-mix", spool_dir=tmp_path / "s")) as fuse:
        assert fuse.wait_ready(30)
        with fuse.run("run-mix"):
            fuse.record("gpt-4o", 600, 0)
            assert fuse.check() == DEFAULT_THROTTLE_DELAY_MS  # local throttle
            publish_signed(settings, "agent:bot-mix", "throttle", throttle_delay_ms=2500)
            assert wait_until(lambda: fuse.check() == 2500, 10)  # the worker's longer delay
            publish_signed(settings, "agent:bot-mix", "block")
            assert wait_until(lambda: "agent:bot-mix" in fuse.kill_switch.states
                              and fuse.kill_switch.states["agent:bot-mix"]["state"] == "block", 10)
            with pytest.raises(BudgetExceeded) as info:
                fuse.check()
            assert info.value.scope == "agent:bot-mix"  # the worker's block over the local throttle
            publish_signed(settings, "agent:bot-mix", "throttle", throttle_delay_ms=2500)
            assert wait_until(lambda: fuse.kill_switch.states["agent:bot-mix"]["state"] == "throttle", 10)
            fuse.record("gpt-4o", 400, 0)
            with pytest.raises(BudgetExceeded) as info:
                fuse.check()
            assert info.value.scope == "run:run-mix"  # the local block over the worker's throttle


def test_a_budget_published_while_running_counts_the_spend_from_then_on(settings, tmp_path):
    with Fuse(settings, FuseOptions(agent="bot-late", spool_dir=tmp_path / "s")) as fuse:
        assert fuse.wait_ready(30)
        with fuse.run("run-late"):
            fuse.record("gpt-4o", 5000, 0)  # no budget yet: not counted here (the worker counts it)
            publish_budget(settings, id="late", scope="run:run-late", metric="input_tokens", window="1h", limit=100)
            assert wait_until(lambda: fuse.ledger.watched, 10)
            made, refusal = calls_until_refused(fuse, 60)
            assert (made, refusal.spent) == (2, 120)
