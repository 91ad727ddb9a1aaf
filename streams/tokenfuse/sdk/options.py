"""What an agent runtime configures beyond the shared Settings: who it is, and its local bounds.

`FuseOptions(...)` never reads the environment; `FuseOptions.from_env()` reads TOKENFUSE_ORG,
TOKENFUSE_TEAM, TOKENFUSE_AGENT, TOKENFUSE_SPOOL_DIR, ... (the field names upper-cased).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokenfuse.config import Settings

# Scope kinds a runtime may declare itself the sole reporter of (see local_scopes); a run always is.
LOCAL_KINDS = ("global", "org", "team", "agent", "user", "model", "tag")


class FuseOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    org: str = Field("default", min_length=1, description="Default attribution: organisation.")
    team: str = Field("default", min_length=1, description="Default attribution: team.")
    agent: str = Field(..., min_length=1, description="Default attribution: agent id (the Kafka key).")
    user: str | None = Field(None, description="Default end user, if the runtime serves one.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every event.")
    provider: str = Field("unknown", description="Default provider name on events.")

    queue_max_events: int = Field(
        100_000, ge=1, description="Events waiting in memory for the background sender; past this, "
        "record() writes to the spool itself.")
    kafka_queue_max_messages: int = Field(100_000, ge=1, description="librdkafka's in-memory bound.")
    delivery_timeout_ms: int = Field(
        120_000, ge=1000, description="How long librdkafka retries an event it holds (idempotently, so "
        "no duplicates) before it goes to the spool. New events go to the spool as soon as the "
        "brokers are seen down.")
    spool_dir: Path | None = Field(None, description="Local disk spool; default <data_dir>/spool/<agent>.")
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=4096, description="Disk bound of the spool.")
    close_timeout_s: float = Field(5.0, ge=0, description="How long close()/exit delivers (new events "
                                   "and the spool) before leaving the rest on disk.")

    local_budgets: bool = Field(
        True, description="Follow the budgets topic and enforce run budgets and the local_scopes "
        "budgets in this process, from its own recorded spend (no pipeline latency).")
    local_scopes: str = Field(
        "", description="Comma-separated scope kinds this runtime alone reports to, enforced locally "
        f"like runs: any of {', '.join(LOCAL_KINDS)} (e.g. 'agent' when one process is the agent).")
    local_max_scopes: int = Field(100_000, ge=100, description="Scope windows counted locally at most; "
                                  "past it the ones idle the longest are forgotten.")

    fail_policy: Literal["open", "closed"] = Field(
        "open", description="When the control topic is unreadable for fail_after_s: open = allow and "
        "warn, closed = block every call.")
    fail_after_s: float = Field(30.0, gt=0, description="Seconds without reading the control topic "
                                "before the fail policy applies.")

    max_blind: float = Field(
        30.0, ge=0, description="Seconds the worker may leave this runtime's shared scopes (global, org, "
        "team, agent) unsettled, by its heartbeats on <prefix>.worker-status, before the fail policy "
        "applies; 0 = never.")

    leases: bool = Field(
        False, description="Spend shared scopes' budgets (global, org, team, agent) within leases the "
        "worker grants (docs/leases.md): a bounded overshoot whatever the worker's lag.")
    lease_wait_s: float = Field(2.0, ge=0, description="How long check() waits for a lease (more of one) "
                                "before raising LeaseUnavailable.")

    @field_validator("local_scopes")
    @classmethod
    def _known_kinds(cls, value: str) -> str:
        unknown = [k for k in cls.kinds(value) if k not in LOCAL_KINDS and k != "run"]
        if unknown:
            raise ValueError(f"unknown scope kind {', '.join(map(repr, unknown))}; use {', '.join(LOCAL_KINDS)}")
        return value

    @staticmethod
    def kinds(value: str) -> list[str]:
        return [k.strip() for k in value.split(",") if k.strip()]

    @property
    def local_kinds(self) -> frozenset[str]:
        """The scope kinds enforced locally: run, and those named in local_scopes."""
        return frozenset(self.kinds(self.local_scopes)) | {"run"}

    @classmethod
    def from_env(cls, **overrides: object) -> "FuseOptions":
        """Read TOKENFUSE_* variables; explicit overrides win. Raises ConfigError listing all problems."""
        # The same reading rules as Settings.from_env (one implementation, run for this class).
        return Settings.from_env.__func__(cls, **overrides)  # type: ignore[attr-defined]
