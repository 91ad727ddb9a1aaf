"""Settings for every process role.

`Settings(...)` never looks at the environment; `Settings.from_env()` is the one explicit place
that does (variables `TOKENFUSE_<FIELD>`, e.g. TOKENFUSE_BOOTSTRAP_SERVERS). Invalid settings are
reported all at once as a ConfigError.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tokenfuse.config.keys import parse_keyring
from tokenfuse.control.signing import Signer, Verifier
from tokenfuse.errors import ConfigError
from tokenfuse.kafka.security import librdkafka_security


_KAFKA_LOG = logging.getLogger("tokenfuse.kafka")

# An HMAC key shorter than its hash's 32-byte output weakens every signature made with it.
CONTROL_KEY_MIN_BYTES = 32

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# Which settings each protocol family uses; setting one the protocol ignores is an error.
SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password")
SSL_FIELDS = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password")
_PROTOCOLS_USING = {"sasl": ("SASL_PLAINTEXT", "SASL_SSL"), "ssl": ("SSL", "SASL_SSL")}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic_prefix: str = Field(
        "tokenfuse",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Topics are <prefix>.usage, <prefix>.budgets, ...; tests use a uuid prefix.",
    )
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of usage and derived topics.")
    data_dir: Path = Field(Path(".tokenfuse"), description="Local state: Faust tables, embedded ClickHouse.")
    clickhouse_url: SecretStr | None = Field(
        None, description="A ClickHouse server (http://user:pass@host:8123/db); unset = embedded chDB."
    )
    clickhouse_database: str = Field("tokenfuse", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="Database of tokenfuse's tables.")
    sink_host: str = Field("127.0.0.1", description="The sink's read-only SQL endpoint (tokenfuse sql).")
    sink_port: int = Field(6067, ge=0, le=65535, description="0 = any free port.")
    sql_max_seconds: float = Field(30.0, gt=0, le=3600, description="Read-only SQL (tokenfuse sql, reports): "
                                   "ClickHouse stops a query after this long (max_execution_time).")
    sql_max_rows: int = Field(100_000, ge=1, description="...and refuses results longer than this (max_result_rows).")
    sink_batch_rows: int = Field(5000, ge=1, description="The sink inserts when this many records wait...")
    sink_batch_seconds: float = Field(1.0, gt=0, description="...or when the oldest waited this long.")
    history_retention_days: int = Field(400, ge=1, le=36500, description="Raw usage events are kept this long.")
    dashboard_port: int = Field(6069, ge=0, le=65535, description="The dashboard's port on 127.0.0.1; 0 = any "
                                "free port (the dashboard prints its URL).")
    dashboard_refresh_seconds: float = Field(1.0, ge=0.2, le=60, description="How often the dashboard re-reads "
                                             "spend from the rollups while a page is open.")
    dashboard_operator: bool = Field(False, description="Show kill/release buttons on the dashboard (token required).")
    dashboard_token_file: Path | None = Field(
        None, description="The operator token (a 0600 file, created if missing); unset = <data_dir>/dashboard.token.")
    control_key: SecretStr | None = Field(
        None, description=f"HMAC key that signs control states; at least {CONTROL_KEY_MIN_BYTES} bytes.")
    control_key_id: str = Field("default", description="Name of the signing key, for rotation.")
    control_keys: SecretStr | None = Field(
        None, description="Further control keys readers accept, `id:secret,...` (key rotation; docs/control-plane.md)."
    )
    budget_keys: SecretStr | None = Field(
        None, description="Budget keys, `id:secret,...`: operators sign budgets with the first, the worker "
        "accepts any. Separate from the control key."
    )
    deployment_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]+$", description="Bound into every signature, so states and budgets "
        "of one deployment do not verify in another; default: the topic prefix."
    )
    app_id: str = Field("tokenfuse-worker", description="Faust app id = consumer group.")
    web_host: str = Field("127.0.0.1", description="The worker's web server (metrics, /sql).")
    web_port: int = Field(6066, ge=0, le=65535, description="0 disables the worker's web server.")
    notify_metrics_port: int = Field(6068, ge=0, le=65535,
                                     description="The notifier's /metrics, on web_host; 0 = any free port.")
    autopilot_metrics_port: int = Field(6071, ge=0, le=65535,
                                        description="The autopilot's /metrics, on web_host; 0 = any free port.")
    grace_seconds: int = Field(60, ge=0, description="Late events within this are still counted.")
    dedupe_seconds: int = Field(3600, ge=60, description="How long an event_id is remembered.")
    processing_guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    commit_interval_ms: int = Field(
        200, ge=10, description="Faust commit (= transaction) interval: bounds kill-switch latency."
    )
    session_timeout_seconds: float = Field(
        10.0, ge=6, le=300, description="A worker that stops heartbeating loses its partitions after "
        "this long: how soon a crashed worker's scopes are taken over."
    )
    lease_ttl_s: float = Field(10.0, gt=0, le=3600, description="How long a lease on a shared scope's budget "
                               "lasts unless renewed (docs/leases.md): a worker down longer leaves runtimes leaseless.")
    detectors: bool = Field(True, description="Forecasts, loop and spike detection in the worker (false: "
                            "thresholds only; the engine bench measures both).")
    windows: str = Field(
        "1m,1h,1d,7d,day,month,rolling:60s",
        description="Windows the worker keeps totals for from the start; budgets may use these. "
        "Calendar windows in other time zones are tracked from when a budget first names them.",
    )

    # Kafka security: one set for every client (SDK, worker, sink, CLI); translated per client
    # library by tokenfuse.kafka.security. Settings that the protocol would ignore are errors, so
    # a half-configured client never silently connects in plaintext.
    security_protocol: SecurityProtocol = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: SaslMechanism | None = Field(
        None, validate_default=True, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols).")
    sasl_username: str | None = Field(None, validate_default=True, description="SASL user (SASL protocols).")
    sasl_password: SecretStr | None = Field(None, validate_default=True, description="SASL password (a secret).")
    ssl_ca_file: Path | None = Field(
        None, validate_default=True, description="PEM CA bundle that signed the brokers' certificates "
        "(SSL protocols); unset = the system's CAs.")
    ssl_cert_file: Path | None = Field(
        None, validate_default=True, description="PEM client certificate, for brokers that require TLS client auth.")
    ssl_key_file: Path | None = Field(None, validate_default=True, description="PEM private key of ssl_cert_file.")
    ssl_key_password: SecretStr | None = Field(
        None, validate_default=True, description="Password of an encrypted ssl_key_file (a secret).")

    @field_validator("control_key")
    @classmethod
    def _key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """Every role refuses a short key at start-up, not only the ones that sign with it."""
        if value is not None and len(value.get_secret_value().encode()) < CONTROL_KEY_MIN_BYTES:
            raise ValueError(f"must be at least {CONTROL_KEY_MIN_BYTES} bytes "
                             f"(generate one with `openssl rand -hex 32`)")
        return value

    @field_validator(*SASL_FIELDS, *SSL_FIELDS, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """So docker compose can pass `${TOKENFUSE_SASL_USERNAME:-}` through when it is not set."""
        return None if value == "" else value

    @field_validator(*SASL_FIELDS, *SSL_FIELDS)
    @classmethod
    def _used_by_protocol(cls, value: Any, info: ValidationInfo) -> Any:
        protocol = info.data.get("security_protocol")
        if protocol is None:  # the protocol itself is invalid: reported on its own
            return value
        family = "sasl" if info.field_name in SASL_FIELDS else "ssl"
        used = protocol in _PROTOCOLS_USING[family]
        if value is not None and not used:
            raise ValueError(f"set, but TOKENFUSE_SECURITY_PROTOCOL={protocol} does not use it "
                             f"(one of {', '.join(_PROTOCOLS_USING[family])} does)")
        if value is None and used and family == "sasl":
            raise ValueError(f"required with TOKENFUSE_SECURITY_PROTOCOL={protocol}")
        return value

    @field_validator("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("ssl_key_file")
    @classmethod
    def _cert_with_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "ssl_cert_file" not in info.data:  # the certificate is invalid: reported on its own
            return value
        if (value is None) != (info.data["ssl_cert_file"] is None):
            raise ValueError("TOKENFUSE_SSL_CERT_FILE and TOKENFUSE_SSL_KEY_FILE go together")
        return value

    @field_validator("ssl_key_password")
    @classmethod
    def _password_with_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and info.data.get("ssl_key_file", value) is None:
            raise ValueError("set, but there is no TOKENFUSE_SSL_KEY_FILE")
        return value

    @field_validator("control_keys", "budget_keys")
    @classmethod
    def _keyring(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keyring(value.get_secret_value())
        return value

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Read TOKENFUSE_* variables; explicit overrides win. Raises ConfigError listing all problems."""

        class _FromEnv(BaseSettings, cls):  # type: ignore[misc, valid-type]
            model_config = SettingsConfigDict(env_prefix="TOKENFUSE_", extra="ignore", frozen=True)

        try:
            values = _FromEnv(**overrides).model_dump()
        except ValidationError as exc:
            raise config_error(exc, env_prefix="TOKENFUSE_") from None
        return cls(**values)

    @property
    def producer_config(self) -> dict[str, Any]:
        """For confluent-kafka producers of keyed records that the worker also writes (control):
        Kafka's Java/aiokafka partitioner, so one key always lands in one partition."""
        return {**self.kafka_config, "partitioner": "murmur2_random"}

    def to_env(self) -> dict[str, str]:
        """TOKENFUSE_* variables that make `from_env()` in a child process rebuild these settings
        (how the demo and tests start worker and sink processes). Contains secrets: pass it to a
        child's environment, never log it."""
        env = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"TOKENFUSE_{name.upper()}"] = str(value)
        return env

    @property
    def deployment(self) -> str:
        return self.deployment_id or self.topic_prefix

    def control_signer(self) -> Signer:
        if self.control_key is None:
            raise ConfigError("TOKENFUSE_CONTROL_KEY is not set")
        return Signer(self.control_key_id, self.control_key.get_secret_value().encode(), self.deployment)

    def control_verifier(self) -> Verifier:
        """The signing key and every further accepted one (a reader during a rotation)."""
        keys = parse_keyring(self.control_keys.get_secret_value()) if self.control_keys else {}
        if self.control_key is not None:
            keys[self.control_key_id] = self.control_key.get_secret_value().encode()
        return Verifier(keys, self.deployment)

    def budget_signer(self) -> Signer:
        if self.budget_keys is None:
            raise ConfigError("TOKENFUSE_BUDGET_KEYS is not set (operators sign budgets with its first key)")
        key_id, key = next(iter(parse_keyring(self.budget_keys.get_secret_value()).items()))
        return Signer(key_id, key, self.deployment)

    def budget_verifier(self) -> Verifier:
        keys = parse_keyring(self.budget_keys.get_secret_value()) if self.budget_keys else {}
        return Verifier(keys, self.deployment)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def kafka_config(self) -> dict[str, str]:
        """confluent-kafka settings shared by every client of ours. librdkafka's own log lines go
        through Python logging ("tokenfuse.kafka"), so an application decides what it shows."""
        return {"bootstrap.servers": self.bootstrap_servers, "logger": _KAFKA_LOG, **librdkafka_security(self)}


def config_error(exc: ValidationError, env_prefix: str = "") -> ConfigError:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        if env_prefix:
            field = f"{env_prefix}{field.upper()}"
        message = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        problems.append(f"{field}: {message}")
    return ConfigError("invalid settings:", problems)
