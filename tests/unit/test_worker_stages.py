"""The worker's pieces that need no broker: the version fence, dedupe and the lateness mark."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tokenfuse.worker.faust_adapter import SUPPORTED, UnsupportedVersion, check_versions
from tokenfuse.worker.seen import SeenIds


def test_the_worker_refuses_to_start_on_faust_or_aiokafka_versions_it_was_not_written_for():
    check_versions(dict(SUPPORTED))
    with pytest.raises(UnsupportedVersion, match="aiokafka 0.15.0 is installed, the worker needs 0.14.0"):
        check_versions({**SUPPORTED, "aiokafka": "0.15.0"})


def seen_ids(grace_ms: int = 60_000) -> SeenIds:
    return SeenIds(SimpleNamespace(data={}), dedupe_ms=3_600_000, grace_ms=grace_ms)


def test_an_event_id_counts_once():
    seen = seen_ids()
    assert not seen.is_duplicate("e1", now=0)
    assert seen.is_duplicate("e1", now=1)
    assert not seen.is_duplicate("e2", now=1)


def test_the_lateness_mark_never_passes_the_workers_clock():
    seen = seen_ids(grace_ms=60_000)
    now = 10_000_000
    assert not seen.is_late(0, now + 3_000_000, now)  # from a fast clock: not late itself...
    assert seen.newest[0] == now  # ...and the mark stays at the worker's clock
    assert not seen.is_late(0, now - 59_000, now)  # so real events within the grace still count
    assert seen.is_late(0, now - 61_000, now)
    assert not seen.is_late(1, now - 61_000, now)  # marks are per input partition


def test_seen_ids_and_marks_are_rebuilt_from_the_recovered_table():
    seen = seen_ids()
    seen.table.data.update({"0:41": [5_000, ["a", "b"], 900], "1:7": [5_000, ["c"], 1_200]})
    seen.load()
    assert seen.is_duplicate("b", now=0) and seen.is_duplicate("c", now=0)
    assert dict(seen.newest) == {0: 900, 1: 1_200}


@pytest.mark.parametrize("header, allowed", [
    ("127.0.0.1:6066", True), ("localhost", True), ("[::1]:6066", True), ("LOCALHOST:1", True),
    ("evil.example:6066", False), ("127.0.0.1.evil.example", False), (None, False), ("", False)])
def test_the_worker_web_server_answers_loopback_host_headers_only(header, allowed):
    from tokenfuse.worker.web import host_allowed

    assert host_allowed(header) is allowed


def test_each_role_names_every_setting_it_misses_at_start_up():
    from tokenfuse.config import Settings
    from tokenfuse.config.roles import require
    from tokenfuse.errors import ConfigError

    require(Settings(), "sink")
    with pytest.raises(ConfigError, match="TOKENFUSE_CONTROL_KEY: required by the worker"):
        require(Settings(), "worker")
    assert require(Settings(control_key="k" * 32), "operator").control_key is not None
