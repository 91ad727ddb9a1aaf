"""The single-object header follows the Avro spec byte for byte, checked against the spec's
reference CRC-64-AVRO algorithm (written out here, independent of fastavro) and the published
values, and messages written with the byte-reversed fingerprint of older releases still decode."""

from __future__ import annotations

import struct

import pytest
from fastavro.schema import to_parsing_canonical_form

from tokenfuse.errors import DecodeError
from tokenfuse.kafka.codec import NAMES, codec

from tests.unit.test_codec import DECISION, LEASE, LEASE_REQUEST, USAGE, WORKER_STATUS

EMPTY = 0xC15D213AA4D7A795  # the spec's "EMPTY" seed, also its polynomial


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp & 0xFFFF_FFFF_FFFF_FFFF)
    return table


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """The Avro specification's reference `fingerprint64` (section "Schema Fingerprints")."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def test_the_reference_algorithm_gives_the_published_fingerprints():
    # Published in Apache Avro's own test suites (Ruby test_fingerprints.rb, Go crc64avro_test.go).
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    assert crc64_avro(b'"string"') == 0x8F014872634503C7


def test_the_published_single_object_header_of_int_is_the_little_endian_fingerprint():
    # Avro's Ruby test_single_object_encoding_header for the schema "int".
    published = bytes([0xC3, 0x01, 0x8F, 0x5C, 0x39, 0x3F, 0x1A, 0xD5, 0x75, 0x72])
    assert b"\xc3\x01" + struct.pack("<Q", crc64_avro(b'"int"')) == published


@pytest.mark.parametrize("name", NAMES)
def test_every_message_header_is_c3_01_then_the_little_endian_crc64_avro_of_its_schema(name):
    c = codec(name)
    canonical = to_parsing_canonical_form(c.schema).encode()
    expected = b"\xc3\x01" + struct.pack("<Q", crc64_avro(canonical))
    sample = {"UsageEvent": USAGE,
              "Budget": {"id": "b", "scope": "global", "metric": "cost_micro_usd", "window": "day", "limit": 5},
              "ControlState": {"scope": "global", "state": "allow", "issued_at": 1},
              "Alert": {"alert_id": "a", "kind": "threshold", "scope": "global", "created_at": 1},
              "AlertAck": {"alert_id": "a", "kind": "loop", "scope": "run:r-1"},
              "AutopilotDecision": DECISION, "WorkerStatus": WORKER_STATUS,
              "Lease": LEASE, "LeaseRequest": LEASE_REQUEST}[name]
    assert c.encode(sample)[:10] == expected


def test_a_message_written_with_the_old_byte_reversed_fingerprint_still_decodes():
    data = codec("UsageEvent").encode(USAGE)
    old = data[:2] + data[2:10][::-1] + data[10:]  # how releases before the fix wrote it
    assert old != data
    assert codec("UsageEvent").decode(old) == USAGE


def test_a_fingerprint_in_neither_byte_order_is_still_refused():
    data = codec("UsageEvent").encode(USAGE)
    scrambled = data[:2] + data[3:10] + data[2:3] + data[10:]
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        codec("UsageEvent").decode(scrambled)
