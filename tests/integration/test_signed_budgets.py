"""Only budgets signed with a budget key reach the worker: forged, unsigned and bare-tombstone
records change nothing, and are counted on /stats."""

from __future__ import annotations

from tests.engine_stream import get_json
from tokenfuse.budgets.store import delete_budget
from tests.helpers import UsageProducer, free_port, publish_budget, publish_budget_value, usage_event
from tokenfuse.control.signing import Signer
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import wait_until


def state_of(control, scope):
    return control.snapshot().get(scope, {}).get("state")


def test_a_forged_unsigned_or_tombstoned_budget_changes_nothing_in_the_worker(settings, tmp_path, control):
    forger = Signer("test-budgets", b"a-forger-who-can-write-the-topic!!", settings.deployment)
    web = settings.model_copy(update={"web_port": free_port()})
    with RoleProcess("worker", web, tmp_path / "worker.log") as worker:
        publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=1000)
        usage = UsageProducer(settings)
        usage.send(usage_event("big", 1200))
        usage.flush()
        assert wait_until(lambda: state_of(control, "agent:big") == "block", 15), worker.tail()

        # Raise the limit with a forged signature, lift it with a tombstone, add a budget unsigned.
        publish_budget(settings, signer=forger, id="cap", scope="agent:*", metric="input_tokens", window="1h",
                       limit=1_000_000)
        publish_budget_value(settings, "cap", None)
        publish_budget_value(settings, "tiny", codec("Budget").encode(
            {"id": "tiny", "scope": "agent:*", "metric": "input_tokens", "window": "1h", "limit": 1}))
        # Then a signed one: once it acts, the worker has read the three before it.
        publish_budget(settings, id="probe", scope="agent:marker", metric="input_tokens", window="1h", limit=1)
        usage.send(usage_event("marker", 5))
        usage.send(usage_event("small", 10))
        usage.flush()
        assert wait_until(lambda: state_of(control, "agent:marker") == "block", 15), worker.tail()

        assert state_of(control, "agent:big") == "block"  # neither the forged limit nor the tombstone lifted it
        assert state_of(control, "agent:small") is None  # the unsigned 1-token budget blocks nobody
        assert wait_until(lambda: get_json(web, "/stats")[1]["counters"].get("budgets_rejected") == 3, 10)
        assert "ignoring record 'cap'" in worker.tail(200)


def test_a_signed_deletion_lifts_the_block_of_its_budget(settings, worker, control):
    publish_budget(settings, id="cap", scope="agent:*", metric="input_tokens", window="1h", limit=100)
    usage = UsageProducer(settings)
    usage.send(usage_event("big", 500))
    usage.flush()
    assert wait_until(lambda: state_of(control, "agent:big") == "block", 15)
    delete_budget(settings, "cap")
    assert wait_until(lambda: state_of(control, "agent:big") == "allow", 15)
