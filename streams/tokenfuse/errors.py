"""One root exception; subclasses carry the context an operator needs to find the bad thing."""

from __future__ import annotations


class TokenfuseError(Exception):
    """Root of every error tokenfuse raises on purpose. The CLI prints these as one line."""


class ConfigError(TokenfuseError):
    """Settings or a user-supplied file are invalid. `problems` lists every problem found."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or []
        detail = "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(message + detail)


class BrokerUnavailable(TokenfuseError):
    """The Kafka broker could not be reached."""


class DecodeError(TokenfuseError):
    """A message could not be decoded or failed validation; it belongs in the DLQ."""

    def __init__(
        self,
        reason: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        raw: bytes | None = None,
    ):
        self.reason = reason
        self.topic, self.partition, self.offset, self.raw = topic, partition, offset, raw
        where = f" at {topic}[{partition}]@{offset}" if topic is not None else ""
        super().__init__(f"{reason}{where}")


class InvalidUsage(TokenfuseError, ValueError):
    """An SDK call got a value the pipeline would refuse (a scope alias, an oversized id or tag):
    raised at the call, so the mistake shows where it was made, not as a DLQ entry later."""

    def __init__(self, field: str, value: object, problem: str):
        self.field, self.value, self.problem = field, value, problem
        super().__init__(problem)


class SignatureError(TokenfuseError):
    """A control state is unsigned or its signature does not verify."""


class BudgetExceeded(TokenfuseError):
    """Raised by the SDK's check() when a scope of this runtime is blocked."""

    def __init__(
        self,
        scope: str,
        *,
        budget_id: str | None = None,
        spent: int | None = None,
        limit: int | None = None,
        until_ms: int | None = None,
        reason: str = "",
    ):
        self.scope, self.budget_id, self.spent, self.limit = scope, budget_id, spent, limit
        self.until_ms, self.reason = until_ms, reason
        what = f"budget {budget_id}: spent {spent} of {limit}" if budget_id else reason or "blocked"
        super().__init__(f"{scope} is blocked ({what})")


class LeaseUnavailable(BudgetExceeded):
    """check() could not get a lease on a shared scope in time (the worker is slow, restarting or
    down): nothing says the budget is spent, so a caller may back off and try again."""
