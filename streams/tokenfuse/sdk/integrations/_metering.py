"""What the client integrations share: a proxy that wraps chosen methods of an SDK client so each
call checks the kill switch before and records the usage the response reports after, for plain,
async and streaming calls alike. The provider modules only say which methods and how to read usage.

The check is told what the call may spend at most, when the request says: its output limit
(`max_tokens`, `max_completion_tokens`, `max_output_tokens`) and an estimate of its prompt (about
4 characters per token over the request's text), so a locally enforced budget refuses a call that
would cross it rather than the one after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tokenfuse.errors import InvalidUsage
from tokenfuse.sdk.fingerprint import request_fingerprint
from tokenfuse.sdk.fuse import Fuse

log = logging.getLogger(__name__)
_ATTRIBUTES = ("model", "user", "provider", "tags", "run")  # what record_after_call may drop


def record_after_call(fuse: Fuse, model: str, input_tokens: int, output_tokens: int, **fields: Any) -> None:
    """Record a call that already happened (and was paid for). A refused attribution value (an
    end user id with `*`, a 100 kB model name from a response...) is dropped and logged rather
    than losing the spend: the usage still counts toward the runtime's org, team and agent."""
    for _ in range(len(_ATTRIBUTES) + 1):
        try:
            fuse.record(model, input_tokens, output_tokens, **fields)
            return
        except InvalidUsage as exc:
            if exc.field not in _ATTRIBUTES:
                raise
            log.error("tokenfuse: recording a finished call without its %s: %s", exc.field, exc)
            if exc.field == "model":
                model = "unknown"
            else:
                fields[exc.field] = None


@dataclass
class Usage:
    """Token counts read from a response or accumulated over a stream's events."""

    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    seen: bool = False
    parts: dict[str, int] = field(default_factory=dict)  # provider-specific counts being summed


_OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_TEXT_FIELDS = ("messages", "system", "input", "instructions", "prompt")
CHARS_PER_TOKEN = 4


def max_output_tokens(kwargs: dict[str, Any]) -> int | None:
    """The request's output token limit, if it sets one."""
    for name in _OUTPUT_LIMITS:
        value = kwargs.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def estimate_input_tokens(kwargs: dict[str, Any]) -> int | None:
    """A cheap estimate of the prompt's tokens from the length of its text (None if it has none)."""
    chars = sum(_text_length(kwargs.get(name)) for name in _TEXT_FIELDS)
    return -(-chars // CHARS_PER_TOKEN) if chars else None


def _text_length(value: Any) -> int:
    """Characters of text in a prompt, a message list, or content parts (images and tools: 0)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_text_length(item) for item in value)
    if isinstance(value, dict):
        return _text_length(value.get("content")) + _text_length(value.get("text"))
    return 0


# Reads whatever usage an object (a response or one stream event) carries into a Usage.
Reader = Callable[[Any, Usage], None]
# Adjusts a call's keyword arguments before it is made (e.g. ask for usage in streams).
Prepare = Callable[[dict[str, Any]], dict[str, Any]]


class Meter:
    """The usage of one call: fed the response or each stream event, recorded once at the end."""

    def __init__(self, fuse: Fuse, read: Reader, provider: str, model: str | None, user: str | None,
                 fingerprint: str | None = None):
        self.fuse, self.read, self.provider, self.user = fuse, read, provider, user
        self.fingerprint = fingerprint
        self.usage = Usage(model=model)
        self.done = False

    def feed(self, obj: Any) -> None:
        self.read(obj, self.usage)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        u = self.usage
        if not u.seen:
            log.warning("tokenfuse: a %s call on %s reported no usage; nothing recorded", self.provider, u.model)
            return
        record_after_call(self.fuse, u.model or "unknown", u.input_tokens, u.output_tokens,
                          cached_tokens=u.cached_tokens, provider=self.provider, user=self.user,
                          request_fingerprint=self.fingerprint)


class MeteredStream:
    """A provider's sync stream, passed through event by event while its usage is read."""

    def __init__(self, stream: Any, meter: Meter):
        self._stream, self._meter = stream, meter

    def __iter__(self):
        try:
            for event in self._stream:
                self._meter.feed(event)
                yield event
        finally:
            self._meter.finish()

    def __enter__(self) -> "MeteredStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()
        self._meter.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncMeteredStream(MeteredStream):
    """The same for a provider's async stream."""

    async def __aiter__(self):
        try:
            async for event in self._stream:
                self._meter.feed(event)
                yield event
        finally:
            self._meter.finish()

    async def __aenter__(self) -> "AsyncMeteredStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stream.close()
        self._meter.finish()


class Metered:
    """How to meter one client method."""

    def __init__(self, fuse: Fuse, provider: str, read: Reader, prepare: Prepare | None = None,
                 user_of: Callable[[dict[str, Any]], str | None] = lambda kwargs: None):
        self.fuse, self.provider, self.read = fuse, provider, read
        self.prepare = prepare or (lambda kwargs: kwargs)
        self.user_of = user_of

    def _before(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Meter, int]:
        kwargs = self.prepare(kwargs)
        user = self.user_of(kwargs)
        delay_ms = self.fuse.check(model=kwargs.get("model"), user=user, max_tokens=max_output_tokens(kwargs),
                                   input_tokens=estimate_input_tokens(kwargs))  # raises BudgetExceeded
        meter = Meter(self.fuse, self.read, self.provider, kwargs.get("model"), user, request_fingerprint(kwargs))
        return kwargs, meter, delay_ms

    def wrap_sync(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs, meter, delay_ms = self._before(kwargs)
            if delay_ms:
                time.sleep(delay_ms / 1000)  # throttled: the pause the pipeline asks for
            result = method(*args, **kwargs)
            if kwargs.get("stream"):
                return MeteredStream(result, meter)
            meter.feed(result)
            meter.finish()
            return result

        return call

    def wrap_async(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            kwargs, meter, delay_ms = self._before(kwargs)
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            result = await method(*args, **kwargs)
            if kwargs.get("stream"):
                return AsyncMeteredStream(result, meter)
            meter.feed(result)
            meter.finish()
            return result

        return call


class ClientProxy:
    """Stands in for an SDK client: attribute paths in `methods` (e.g. "chat.completions.create")
    are metered, everything else is the client's own."""

    def __init__(self, target: Any, methods: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]):
        self._target, self._methods = target, methods

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in self._methods:
            return self._methods[name](value)
        deeper = {path[len(name) + 1:]: wrap for path, wrap in self._methods.items() if path.startswith(name + ".")}
        return ClientProxy(value, deeper) if deeper else value

    def __repr__(self) -> str:
        return f"<tokenfuse metered {self._target!r}>"
