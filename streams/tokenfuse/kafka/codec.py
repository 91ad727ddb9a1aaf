"""Avro encoding of every tokenfuse message, with the schemas in schemas/*.avsc.

Messages use Avro single-object encoding (C3 01, the writer schema's 8-byte CRC-64-AVRO
fingerprint little-endian, then the body), so any language can decode them with the .avsc alone
(Java: Avro's BinaryMessageDecoder) and an old writer schema is recognised by its fingerprint.
Older schema versions live in schemas/history/<Name>.v<N>.avsc; data they wrote is read with the
current schema. Until 2026-11 tokenfuse wrote the fingerprint byte-reversed (big-endian); such
messages (old topics, SDK spools) are still read, never written.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from tokenfuse.errors import DecodeError
from tokenfuse.resources import resource_path

MAGIC = b"\xc3\x01"
_HEADER_SIZE = 10

NAMES = ("UsageEvent", "Budget", "ControlState", "Alert", "AlertAck", "AutopilotDecision", "WorkerStatus", "Lease",
         "LeaseRequest")


def _fingerprint(parsed: dict) -> bytes:
    """The 8 fingerprint bytes as the spec writes them: CRC-64-AVRO, little-endian. fastavro's hex
    string already lists the bytes in that order."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _load(path: Path) -> dict:
    """The parsed schema with fastavro's "parsed" hint: without it every schemaless_reader/writer
    call parses the schema again (measured: 17 µs per UsageEvent decode instead of 7.5). The
    hint's keys do not change the canonical form, so fingerprints stay the same."""
    return fastavro.parse_schema(json.loads(path.read_text()))


class Codec:
    """Encoder/decoder for one message type: writes the current schema, reads any known version."""

    def __init__(self, name: str, schema_dir: Path):
        self.name = name
        self.schema = _load(schema_dir / f"{name}.avsc")
        self.fingerprint = _fingerprint(self.schema)
        self._header = MAGIC + self.fingerprint
        self._defaults = _defaults(self.schema)
        self._writers: dict[bytes, dict] = {}
        for parsed in [self.schema] + [_load(old) for old in sorted((schema_dir / "history").glob(f"{name}.v*.avsc"))]:
            fp = _fingerprint(parsed)
            self._writers[fp] = parsed
            self._writers.setdefault(fp[::-1], parsed)  # the byte order tokenfuse wrote before

    def encode(self, record: dict[str, Any]) -> bytes:
        """Encode with the current schema; fields the record omits take their schema default."""
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self.schema, {**self._defaults, **record})
        return buf.getvalue()

    def encode_body(self, record: dict[str, Any]) -> bytes:
        """The Avro body alone (no header): the canonical bytes that control signatures cover."""
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, {**self._defaults, **record})
        return buf.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if not data or len(data) < _HEADER_SIZE:
            raise DecodeError(f"not a {self.name}: {len(data or b'')} bytes is too short", raw=data)
        if data[:2] != MAGIC:
            raise DecodeError(f"not a {self.name}: no Avro single-object header", raw=data)
        fp = bytes(data[2:_HEADER_SIZE])
        writer = self._writers.get(fp)
        if writer is None:
            raise DecodeError(f"not a {self.name}: unknown schema fingerprint {fp.hex()}", raw=data)
        buf = io.BytesIO(data)
        buf.seek(_HEADER_SIZE)
        try:
            # Resolution costs time; skip it when the writer schema is the current one.
            reader = None if writer is self.schema else self.schema
            record = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            raise DecodeError(f"corrupt {self.name} body: {exc!r}", raw=data) from None
        if buf.tell() != len(data):
            raise DecodeError(f"corrupt {self.name}: {len(data) - buf.tell()} trailing bytes", raw=data)
        return record


def _defaults(schema: dict) -> dict[str, Any]:
    """Top-level field defaults as Python values (Avro writes bytes defaults as JSON strings)."""
    out = {}
    for f in schema["fields"]:
        if "default" in f:
            out[f["name"]] = f["default"].encode("latin-1") if f["type"] == "bytes" else f["default"]
    return out


@lru_cache(maxsize=None)
def codec(name: str) -> Codec:
    """The codec for a message type by schema name, e.g. codec("UsageEvent")."""
    if name not in NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(NAMES)}")
    return Codec(name, resource_path("schemas"))
