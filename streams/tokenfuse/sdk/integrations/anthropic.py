"""Anthropic: `client = wrap(Anthropic(), fuse)` (or AsyncAnthropic). Metered: messages.create,
plain and with stream=True. Anthropic counts cache reads and writes apart from input_tokens; here
input_tokens is their sum (as in every tokenfuse event) and cached_tokens the cache reads."""

from __future__ import annotations

from typing import Any

from tokenfuse.sdk.fuse import Fuse
from tokenfuse.sdk.integrations._metering import ClientProxy, Metered, Usage


def read_usage(obj: Any, usage: Usage) -> None:
    """Usage from a Message, or from the message_start / message_delta events of a stream
    (message_delta carries cumulative counts; fields it leaves out keep their earlier value)."""
    kind = getattr(obj, "type", None)
    if kind == "message_start":
        obj = obj.message
    elif kind != "message_delta" and kind != "message":
        return
    usage.model = getattr(obj, "model", None) or usage.model
    counts, parts = obj.usage, usage.parts
    for field in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        if getattr(counts, field, None) is not None:
            parts[field] = getattr(counts, field)
    usage.input_tokens = sum(parts.values())
    usage.cached_tokens = parts.get("cache_read_input_tokens", 0)
    if counts.output_tokens is not None:
        usage.output_tokens = counts.output_tokens
    usage.seen = True


def wrap(client: Any, fuse: Fuse) -> Any:
    """The client, metered: every call checks the kill switch first and records its usage."""
    import anthropic

    metered = Metered(fuse, "anthropic", read_usage)
    wrap_method = metered.wrap_async if isinstance(client, anthropic.AsyncAnthropic) else metered.wrap_sync
    return ClientProxy(client, {"messages.create": wrap_method})
