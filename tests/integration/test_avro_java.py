"""Apache Avro's own Java implementation reads tokenfuse messages and writes ones tokenfuse reads:
the single-object header (C3 01 + little-endian CRC-64-AVRO fingerprint) is the spec's, so a Java
consumer needs only the .avsc (BinaryMessageDecoder / BinaryMessageEncoder, tests/java/)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_codec import USAGE
from tokenfuse.kafka.codec import codec
from tokenfuse.resources import resource_path

REPO = Path(__file__).resolve().parents[2]
JAVA = REPO / "tests" / "java"


@pytest.fixture(scope="session")
def avro_jars() -> Path:
    """Apache Avro's jars, resolved from Maven Central once (cached in ~/.m2 and .tokenfuse/)."""
    libs = REPO / ".tokenfuse" / "java-avro" / "libs"
    done = libs / ".complete"
    if not (done.exists() and done.stat().st_mtime >= (JAVA / "pom.xml").stat().st_mtime):
        assert shutil.which("mvn") and shutil.which("javac"), "a JDK (javac) and Maven are needed (.ci/run installs them)"
        shutil.rmtree(libs, ignore_errors=True)
        subprocess.run(["mvn", "-q", "-B", "-f", str(JAVA / "pom.xml"), "dependency:copy-dependencies",
                        f"-DoutputDirectory={libs}"], check=True, capture_output=True, timeout=300)
        done.touch()
    return libs


def java(jars: Path, *args: str, stdin: str = "") -> list[str]:
    result = subprocess.run(["java", "-cp", f"{jars}/*", str(JAVA / "AvroInterop.java"), *args], input=stdin,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def schema(name: str) -> str:
    return str(resource_path("schemas") / f"{name}.avsc")


def test_java_binary_message_decoder_reads_a_tokenfuse_message_and_not_the_old_byte_order(avro_jars):
    data = codec("UsageEvent").encode(USAGE)
    old = data[:2] + data[2:10][::-1] + data[10:]  # what tokenfuse wrote before the fix
    new_line, old_line = java(avro_jars, "decode", schema("UsageEvent"), stdin=f"{data.hex()}\n{old.hex()}\n")
    assert json.loads(new_line) == USAGE
    assert old_line.startswith("ERROR Cannot resolve schema for fingerprint")


def test_a_control_state_written_by_java_binary_message_encoder_is_read_by_tokenfuse(avro_jars):
    state = {"scope": "agent:bot-1", "state": "block", "budget_id": {"string": "b"}, "reason": "over",
             "metric": None, "spent": {"long": 120}, "limit": {"long": 100}, "window_start": None,
             "until": {"long": 1_900_000_000_000}, "throttle_delay_ms": None, "issued_at": 5,
             "version": 7, "source": "worker", "key_id": "default", "signature": ""}
    [encoded] = java(avro_jars, "encode", schema("ControlState"), json.dumps(state))
    decoded = codec("ControlState").decode(bytes.fromhex(encoded))
    assert (decoded["scope"], decoded["state"], decoded["budget_id"], decoded["spent"], decoded["until"],
            decoded["version"]) == ("agent:bot-1", "block", "b", 120, 1_900_000_000_000, 7)
