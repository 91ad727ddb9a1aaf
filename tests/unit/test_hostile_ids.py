"""Ids that would let one scope pose as another, or blow up scopes and messages, are refused: by
the SDK at the call (InvalidUsage / ConfigError naming field and value) and by validate_usage (a
DecodeError reason: the worker sends the event to the DLQ). One set of rules serves both."""

from __future__ import annotations

import pytest

from tests.unit.test_sdk_fuse import NOWHERE
from tokenfuse.errors import ConfigError, DecodeError, InvalidUsage
from tokenfuse.sdk import Fuse, FuseOptions
from tokenfuse.usage.scopes import event_scopes, validate_scope
from tokenfuse.usage.validate import validate_usage

NOW = 1_800_000_000_000
GOOD = {"event_id": "e-1", "event_time": NOW, "org": "acme", "team": "search", "agent": "bot-1", "run": "r-1",
        "user": "alice@example.com", "model": "openai/gpt-4o", "provider": "openai", "input_tokens": 5,
        "output_tokens": 5, "cached_tokens": 0, "cost_micro_usd": None, "tags": {"env": "prod", "url": "a?b=c"}}

HOSTILE = [  # (change to a good event, the field the reason names, what it says)
    ({"org": "a/b", "team": "c"}, "org", "'/'"),
    ({"org": "a", "team": "b/c"}, "team", "'/'"),
    ({"tags": {"a=b": "c"}}, "tag key", "'='"),
    ({"agent": "*"}, "agent", "'*'"),
    ({"run": "*"}, "run", "'*'"),
    ({"model": "gpt-*"}, "model", "'*'"),
    ({"agent": "bot\n1"}, "agent", "'\\n'"),
    ({"user": "al\x00ice"}, "user", "'\\x00'"),
    ({"team": "sea\u202erch"}, "team", "'\\u202e'"),  # right-to-left override: prints as another name
    ({"agent": ".."}, "agent", "spool folder"),
    ({"provider": "openai/gpt-4o"}, "provider", "'/'"),
    ({"run": "r" * 100_000}, "run", "100000 characters"),
    ({"user": "u" * 257}, "user", "257 characters"),
    ({"tags": {"k" * 65: "v"}}, "tag key", "65 characters"),
    ({"tags": {"k": "v" * 100_000}}, "tag value", "100000 characters"),
    ({"tags": {f"t{i}": "v" for i in range(100_000)}}, "tags", "100000 tags, more than 16"),
    ({"tags": {"": "v"}}, "tag key", "empty"),
    ({"model": ""}, "model", "empty"),
]


def test_a_good_event_with_slashes_and_colons_where_they_alias_nothing_passes():
    validate_usage(GOOD, NOW)
    validate_usage({**GOOD, "model": "llama3:8b", "agent": "ns:bot", "run": "a/b=c"}, NOW)


@pytest.mark.parametrize("change, field, what", HOSTILE, ids=[f"{f}-{w[:20]}" for _, f, w in HOSTILE])
def test_validate_usage_refuses_hostile_ids_with_a_reason_naming_field_and_value(change, field, what):
    with pytest.raises(DecodeError) as info:
        validate_usage({**GOOD, **change}, NOW)
    assert field in info.value.reason and what in info.value.reason
    assert len(info.value.reason) < 300  # a 100 kB value is cut short in the reason


def test_the_aliasing_pairs_would_have_shared_a_scope_key():
    """Why the rules exist: without them these different events count toward one scope."""
    assert "team:a/b/c" in event_scopes({**GOOD, "org": "a/b", "team": "c"})
    assert "team:a/b/c" in event_scopes({**GOOD, "org": "a", "team": "b/c"})
    assert "tag:a=b=c" in event_scopes({**GOOD, "tags": {"a=b": "c"}})
    assert "tag:a=b=c" in event_scopes({**GOOD, "tags": {"a": "b=c"}})


def test_budget_scopes_that_no_valid_event_can_have_are_refused():
    assert "team 'b/c'" in validate_scope("team:a/b/c")
    assert "'\\n'" in validate_scope("agent:bot\n")
    assert validate_scope("tag:a=b=c") is None  # key a, value b=c: one reading only
    assert validate_scope("team:acme/*") is None and validate_scope("tag:env=*") is None
    assert validate_scope("team:*") is None and validate_scope("agent:*") is None
    assert validate_scope("model:openai/gpt-4o") is None


@pytest.fixture(scope="module")
def fuse(tmp_path_factory):
    spool = tmp_path_factory.mktemp("spool")
    with Fuse(NOWHERE, FuseOptions(agent="bot", tags={"env": "prod"}, spool_dir=spool, close_timeout_s=0)) as f:
        yield f


@pytest.mark.parametrize("call, field, value", [
    (lambda f: f.record("gpt-*", 1, 1), "model", "gpt-*"),
    (lambda f: f.record("gpt-4o", 1, 1, user="*"), "user", "*"),
    (lambda f: f.record("gpt-4o", 1, 1, run="r\r\n"), "run", "r\r\n"),
    (lambda f: f.record("gpt-4o", 1, 1, provider="a/b"), "provider", "a/b"),
    (lambda f: f.record("gpt-4o", 1, 1, tags={"a=b": "c"}), "tags", {"a=b": "c"}),
    (lambda f: f.record("gpt-4o", 1, 1, tags={"k": "v" * 300}), "tags", {"k": "v" * 300}),
    (lambda f: f.record("gpt-4o", 1, 1, tags={f"t{i}": "v" for i in range(16)}), "tags", None),  # 17 with env
    (lambda f: f.check(model="m\x00"), "model", "m\x00"),
    (lambda f: f.check(tags={"a": "*"}), "tags", {"a": "*"}),
    (lambda f: f.check(run="x" * 1000), "run", "x" * 1000),
    (lambda f: f.run("*"), "run", "*"),
])
def test_the_sdk_refuses_hostile_values_at_the_call(fuse, call, field, value):
    with pytest.raises(InvalidUsage) as info:
        call(fuse)
    assert info.value.field == field and field.rstrip("s") in str(info.value)
    if value is not None:
        assert info.value.value == value
    assert fuse.stats["invalid"] == 0  # nothing reached the sender


def test_the_sdk_accepts_model_names_with_slashes_and_colons(fuse):
    fuse.record("openai/gpt-4o", 1, 1)
    fuse.record("llama3:8b", 1, 1, tags={"url": "a?b=c"})
    assert fuse.check(model="openai/gpt-4o", run="r/1") == 0


def test_fuse_construction_lists_every_bad_option(tmp_path):
    options = FuseOptions(org="a/b", team="*", agent="../x", tags={"a=b": "c"}, spool_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        Fuse(NOWHERE, options)
    assert [p.split(" ")[0] for p in info.value.problems] == ["org", "team", "agent", "tag"]
    assert "'a/b'" in str(info.value) and "'../x'" in str(info.value)


def test_an_integration_records_a_paid_call_without_the_refused_value(tmp_path, caplog):
    from tokenfuse.sdk.integrations._metering import record_after_call

    with Fuse(NOWHERE, FuseOptions(agent="bot", spool_dir=tmp_path, close_timeout_s=0)) as fuse:
        record_after_call(fuse, "gpt-4o\x00" * 100, 10, 5, provider="openai", user="*")  # from a response/request
        fuse.flush(5)
    assert fuse.stats["spooled"] == 1  # the spend is kept (no broker here: on disk)
    dropped = [r.getMessage() for r in caplog.records if "recording a finished call without" in r.getMessage()]
    assert [m.split(":")[1].split()[-1] for m in dropped] == ["model", "user"]


def test_an_identity_accepted_before_does_not_let_a_bad_event_id_or_changed_field_through():
    validate_usage(dict(GOOD), NOW)  # remembered as accepted
    validate_usage(dict(GOOD), NOW)  # and accepted again from memory
    with pytest.raises(DecodeError, match="event_id"):
        validate_usage({**GOOD, "event_id": "e\n2"}, NOW)
    for change, field, _ in HOSTILE:
        with pytest.raises(DecodeError, match=field):
            validate_usage({**GOOD, **change}, NOW)
        with pytest.raises(DecodeError, match=field):  # refused every time, never remembered
            validate_usage({**GOOD, **change}, NOW)
