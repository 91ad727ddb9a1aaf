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


def ingest_stage(grace_ms: int = 60_000):
    from collections import Counter

    from tokenfuse.usage.pricing import PriceCatalog
    from tokenfuse.worker.ingest import Ingest

    return Ingest(seen=seen_ids(grace_ms), catalog=PriceCatalog.load(), stats=Counter(), partitions=2,
                  grace_ms=grace_ms)


def records(*values: bytes):
    from tokenfuse.worker.ingest import Record

    return [Record("usage", 0, offset, b"k", value) for offset, value in enumerate(values)]


def test_ingest_folds_a_batch_into_deltas_and_sets_bad_duplicate_and_future_records_apart():
    from tests.helpers import usage_event
    from tokenfuse.kafka.codec import codec
    from tokenfuse.worker.engine.deltas import decode_message

    now = 1_700_000_000_000
    encode = codec("UsageEvent").encode
    good = usage_event("bot", 40, when_ms=now - 1_000)
    stage = ingest_stage()
    folded = stage.fold(0, records(encode(good), encode(good), b"this is not avro at all",
                                   encode(usage_event("bot", 5, when_ms=now + 3_600_000)),
                                   encode(usage_event("bot", 2, when_ms=now - 5_000))), now)
    assert dict(stage.stats) == {"events": 2, "duplicates": 1, "dlq": 2}
    reasons = [reason for _, reason in folded.dead_letters]
    assert "no Avro single-object header" in reasons[0] and "ahead of the worker's clock" in reasons[1]
    deltas = [d for _, message in folded.deltas for d in decode_message(message)]
    assert sum(d.input_tokens for d in deltas if d.scope == "agent:bot") == 42
    assert folded.seen[0] == "0:4" and len(folded.seen[1][1]) == 2  # the batch's two new event ids


def test_account_settles_deltas_once_even_when_a_message_is_replayed():
    from collections import Counter

    from tokenfuse.usage.windows import parse_window
    from tokenfuse.worker.account import Account
    from tokenfuse.worker.engine.deltas import DeltaBatch
    from tokenfuse.worker.engine.rules import BudgetIndex
    from tokenfuse.control.signing import Signer
    from tokenfuse.worker.engine.settle import Settler

    hour = parse_window("1h")
    stats: Counter[str] = Counter()
    account = Account(table=SimpleNamespace(data={}), settler=Settler({hour.name: hour}, stats, Signer("k", b"k" * 32, "unit")),
                      feed=None, stats=stats, outputs={}, partitions=1, idle_ms=lambda: 0, owned=set)
    batch = DeltaBatch()
    batch.add({"event_id": "e1", "event_time": 1_000, "input_tokens": 7, "output_tokens": 0, "cached_tokens": 0},
              ["global", "agent:a"], cost=1)
    [(_, message)] = batch.messages(1, 1_000_000)
    index = BudgetIndex([{"id": "b", "scope": "agent:a", "metric": "input_tokens", "window": "1h", "limit": 10,
                          "thresholds": [{"percent": 50, "action": "block"}]}])
    changed, outputs = account.settle([(5, message)], index, now=2_000)
    assert set(changed) == {"global", "agent:a"} and [o.topic for o in outputs] == ["alerts", "control"]
    account.table.data.update(changed)  # what the shell writes, with its changelog
    again, outputs = account.settle([(5, message)], index, now=2_000)  # replayed: a crash before the commit
    assert (again, outputs, stats["settled_events"]) == ({}, [], 1)
    assert account.table.data["agent:a"].window(hour, 1_000).totals[0] == 7
