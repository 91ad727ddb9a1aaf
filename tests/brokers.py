"""Brokers of a test's own, started with deploy/kafka/kafka.sh on free ports (sharing the jars of
the repository's broker home when present): plain ones for tests that stop and start them, and
a secured one (TLS, SCRAM users per role, ACLs) for the security tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.helpers import free_port
from tokenfuse.config import Settings
from tokenfuse.config.settings import SASL_FIELDS, SSL_FIELDS
from tokenfuse.kafka.acls import apply_acls, principals, role_grants
from tokenfuse.kafka.topics import create_topics, delete_topics

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"
SECURITY_FIELDS = {"security_protocol", *SASL_FIELDS, *SSL_FIELDS}


class LocalBroker:
    def __init__(self, home: Path, secure: bool = False):
        self.home, self.secure = home, secure
        self.started = False
        self.env = {**os.environ, "TOKENFUSE_KAFKA_HOME": str(home), "TOKENFUSE_KAFKA_SECURE": "1" if secure else "0",
                    "TOKENFUSE_PYTHON": sys.executable}  # kafka.sh runs `tokenfuse topics` as admin
        shared_libs = REPO / ".tokenfuse" / "kafka" / "libs"
        if (shared_libs / ".complete").exists():
            self.env["TOKENFUSE_KAFKA_LIBS"] = str(shared_libs)
        self._pick_ports()

    def _pick_ports(self) -> None:
        self.port = free_port(span=3)  # clients, controller, TLS client-auth listener (secured)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env["TOKENFUSE_KAFKA_PORT"] = str(self.port)

    def _run(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), action], env=self.env, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start (or restart, on the same address). A free port can be taken by another process's
        connection before the broker binds it (a busy shared machine): the first start then
        retries on other ports."""
        for _ in range(3):
            result = self._run("start")
            if result.returncode == 0 or self.started or "Address already in use" not in result.stderr:
                break
            self._pick_ports()
        assert result.returncode == 0, f"kafka.sh start failed:\n{result.stdout}\n{result.stderr}"
        self.started = True

    def stop(self) -> None:
        result = self._run("stop")
        assert result.returncode == 0, f"kafka.sh stop failed:\n{result.stdout}\n{result.stderr}"

    def role_settings(self, role: str, base: Settings) -> Settings:
        """`base` connecting as a role (or `admin`) of the secured broker, with the settings that
        kafka.sh wrote to <home>/secure/<role>.env (`<role>-mtls`: with its client certificate)."""
        lines = (self.home / "secure" / f"{role}.env").read_text().splitlines()
        fields = {k.removeprefix("TOKENFUSE_").lower(): v for k, v in (line.split("=", 1) for line in lines if line)}
        kept = {k: v for k, v in base.model_dump().items() if k not in SECURITY_FIELDS}  # the role's own only
        return Settings(**{**kept, **fields})


@dataclass
class Cluster:
    """One test's topics on a broker, and the settings each role connects with. On a plaintext
    broker every role connects as `settings`; on the secured one each with its own SCRAM user
    (`via="sasl"`) or client certificate (`via="mtls"`), and the ACLs of tokenfuse/kafka/acls.py
    for this test's topic prefix and app id apply."""

    settings: Settings  # the admin's (secured) or everyone's (plaintext)
    broker: LocalBroker | None = None
    via: Literal["sasl", "mtls"] = "sasl"

    def role(self, name: str) -> Settings:
        if self.broker is None:
            return self.settings
        return self.broker.role_settings(name if self.via == "sasl" else f"{name}-mtls", self.settings)

    def create(self) -> "Cluster":
        create_topics(self.settings)
        if self.broker is not None:
            apply_acls(self.settings, role_grants(self.settings), principals())
        return self

    def delete(self) -> None:
        delete_topics(self.settings)

