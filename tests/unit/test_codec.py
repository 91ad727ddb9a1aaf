"""Schema round-trips, evolution (old data reads with the new schema) and malformed input."""

from __future__ import annotations

import json
import shutil

import pytest

from tokenfuse.kafka.codec import NAMES, Codec, codec
from tokenfuse.errors import DecodeError
from tokenfuse.resources import resource_path

USAGE = {
    "event_id": "e-1", "event_time": 1_700_000_000_123, "org": "acme", "team": "search",
    "agent": "bot-1", "run": "r-9", "user": None, "model": "gpt-4o", "provider": "openai",
    "input_tokens": 1200, "output_tokens": 300, "cached_tokens": 200, "cost_micro_usd": None,
    "tags": {"env": "prod"}, "request_fingerprint": "9f2c" * 16,
}
DECISION = {"id": "ap-1", "kind": "raise", "status": "applied", "budget_id": "b", "scope": "team:a/b",
            "metric": "cost_micro_usd", "old_limit": 1, "new_limit": 2, "base_limit": 1, "mode": "auto",
            "decided_at": 1}
WORKER_STATUS = {"partition": 0, "partitions": 2, "worker": "host:1", "fresh_ms": 5, "usage_lag_events": 0,
                 "deltas_lag_events": 0, "ready": True, "issued_at": 6}
LEASE = {"budget_id": "b", "scope": "team:acme/search", "holder": "h-1", "window_start": 0, "cap": 500, "issued_at": 7}
LEASE_REQUEST = {"budget_id": "b", "scope": "team:acme/search", "holder": "h-1", "window_start": 0, "used": 9,
                 "sent_at": 8}


def test_usage_event_round_trips():
    assert codec("UsageEvent").decode(codec("UsageEvent").encode(USAGE)) == USAGE


def test_control_state_round_trips_with_defaults_filled():
    state = {"scope": "agent:bot-1", "state": "block", "issued_at": 5}
    decoded = codec("ControlState").decode(codec("ControlState").encode(state))
    assert decoded["state"] == "block" and decoded["until"] is None and decoded["signature"] == b""


def test_every_field_added_later_has_a_default():
    """Backward compatibility rule: only the original required fields may lack a default."""
    for name in NAMES:
        schema = json.loads((resource_path("schemas") / f"{name}.avsc").read_text())
        required = [f["name"] for f in schema["fields"] if "default" not in f]
        assert required, name  # sanity: the test sees the fields
        # Every field beyond the required core must have a default, so old writers stay readable.
        assert all("default" in f for f in schema["fields"] if f["name"] not in required)


@pytest.mark.parametrize("name", NAMES)
def test_data_written_with_an_older_schema_reads_with_the_current_one(tmp_path, name):
    """An older schema = the current one without its defaulted fields. Data it wrote, tagged with
    its own fingerprint, must decode with the current schema and get the defaults."""
    current = json.loads((resource_path("schemas") / f"{name}.avsc").read_text())
    old = {**current, "fields": [f for f in current["fields"] if "default" not in f]}
    schema_dir = tmp_path / "schemas"
    shutil.copytree(resource_path("schemas"), schema_dir)
    (schema_dir / "history").mkdir(exist_ok=True)
    (schema_dir / "history" / f"{name}.v0.avsc").write_text(json.dumps(old))
    old_only = tmp_path / "old"
    old_only.mkdir()
    (old_only / f"{name}.avsc").write_text(json.dumps(old))

    sample = {"UsageEvent": USAGE, "Budget": {"id": "b", "scope": "global", "metric": "cost_micro_usd",
                                              "window": "day", "limit": 5},
              "ControlState": {"scope": "global", "state": "allow", "issued_at": 1},
              "Alert": {"alert_id": "a", "kind": "threshold", "scope": "global", "created_at": 1},
              "AlertAck": {"alert_id": "a", "kind": "loop", "scope": "run:r-1"},
              "AutopilotDecision": DECISION, "WorkerStatus": WORKER_STATUS,
              "Lease": LEASE, "LeaseRequest": LEASE_REQUEST}[name]
    old_record = {f["name"]: sample[f["name"]] for f in old["fields"]}
    data = Codec(name, old_only).encode(old_record)

    decoded = Codec(name, schema_dir).decode(data)
    for field in current["fields"]:
        expected = old_record[field["name"]] if field["name"] in old_record else field["default"]
        assert decoded[field["name"]] == expected


@pytest.mark.parametrize("data, reason", [
    (b"", "too short"),
    (b"not avro at all", "no Avro single-object header"),
    (b"\xc3\x01" + b"\x00" * 8 + b"x", "unknown schema fingerprint"),
])
def test_malformed_bytes_raise_decode_error_with_reason(data, reason):
    with pytest.raises(DecodeError, match=reason):
        codec("UsageEvent").decode(data)


def test_truncated_and_padded_bodies_are_rejected():
    good = codec("UsageEvent").encode(USAGE)
    with pytest.raises(DecodeError, match="corrupt"):
        codec("UsageEvent").decode(good[:-5])
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec("UsageEvent").decode(good + b"\x00")


def test_a_message_of_another_type_is_not_decoded_as_usage():
    budget = codec("Budget").encode({"id": "b", "scope": "global", "metric": "cost_micro_usd",
                                     "window": "day", "limit": 5})
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        codec("UsageEvent").decode(budget)


@pytest.mark.parametrize("name", ["Budget", "ControlState"])
def test_records_written_before_signatures_and_versions_still_read(tmp_path, name):
    schemas = resource_path("schemas")
    (tmp_path / f"{name}.avsc").write_text((schemas / "history" / f"{name}.v1.avsc").read_text())
    old_writer = Codec(name, tmp_path)  # only the previous version, as old producers had it
    record = ({"id": "b", "scope": "global", "metric": "total_tokens", "window": "1h", "limit": 5}
              if name == "Budget" else {"scope": "global", "state": "block", "issued_at": 3})
    decoded = codec(name).decode(old_writer.encode(record))
    assert not decoded["signature"] and (decoded["deleted"] is False if name == "Budget"
                                            else decoded["version"] == 0)
