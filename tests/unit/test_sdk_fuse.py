"""Fuse's user-facing errors (no broker involved: it points at a closed port on 127.0.0.1)."""

from __future__ import annotations

import pytest

from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError
from tokenfuse.sdk import Fuse, FuseOptions

NOWHERE = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit", control_key="k" * 32)


def test_a_fuse_without_a_control_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="TOKENFUSE_CONTROL_KEY"):
        Fuse(NOWHERE.model_copy(update={"control_key": None}), FuseOptions(agent="a", spool_dir=tmp_path))


def test_options_from_env_list_every_problem(monkeypatch):
    monkeypatch.delenv("TOKENFUSE_AGENT", raising=False)
    monkeypatch.setenv("TOKENFUSE_FAIL_POLICY", "sometimes")
    monkeypatch.setenv("TOKENFUSE_SPOOL_MAX_BYTES", "12")
    monkeypatch.setenv("TOKENFUSE_LOCAL_SCOPES", "agent,teams")
    with pytest.raises(ConfigError) as info:
        FuseOptions.from_env()
    assert {p.split(":")[0] for p in info.value.problems} == {
        "TOKENFUSE_AGENT", "TOKENFUSE_FAIL_POLICY", "TOKENFUSE_SPOOL_MAX_BYTES", "TOKENFUSE_LOCAL_SCOPES"}
    assert any("unknown scope kind 'teams'" in p for p in info.value.problems)


def test_local_scopes_name_the_kinds_enforced_locally_besides_runs(monkeypatch):
    monkeypatch.setenv("TOKENFUSE_LOCAL_SCOPES", " agent , user")
    assert FuseOptions.from_env(agent="a").local_kinds == {"run", "agent", "user"}
    assert FuseOptions(agent="a").local_kinds == {"run"}


def test_record_refuses_negative_counts_and_close_spools_what_no_broker_took(tmp_path):
    fuse = Fuse(NOWHERE, FuseOptions(agent="a", spool_dir=tmp_path, close_timeout_s=0))
    with pytest.raises(ValueError, match="negative"):
        fuse.record("gpt-4o", -1, 5)
    fuse.record("gpt-4o", 1, 5)
    left = fuse.close()
    assert fuse.stats["spooled"] == 1  # no broker: the event is on disk, not lost
    assert (left.in_memory, left.on_disk, left.undelivered, bool(left)) == (0, 1, 1, False)
    assert fuse.close() is left  # closing again changes nothing


def test_a_request_fingerprint_ignores_key_order_transport_and_sdk_objects_but_not_content():
    from dataclasses import dataclass

    from tokenfuse.sdk.fingerprint import request_fingerprint

    @dataclass
    class Tool:
        name: str

    base = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    same = {"temperature": 0, "stream": True, "user": "u-1", "stream_options": {"include_usage": True},
            "messages": ({"content": "hi", "role": "user"},), "model": "gpt-4o", "timeout": 3}
    assert request_fingerprint(base) == request_fingerprint(same)
    assert len(request_fingerprint(base)) == 32 and "hi" not in request_fingerprint(base)
    assert request_fingerprint(base) != request_fingerprint({**base, "messages": [{"role": "user", "content": "ho"}]})
    assert request_fingerprint(base) != request_fingerprint({**base, "temperature": 1})
    assert request_fingerprint({**base, "tools": [Tool("search")]}) == request_fingerprint({**base, "tools": [{"name": "search"}]})
