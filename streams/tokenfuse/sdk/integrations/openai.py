"""OpenAI: `client = wrap(OpenAI(), fuse)` (or AsyncOpenAI). Metered: chat.completions.create,
responses.create, completions.create, embeddings.create; streams too (chat streams are asked for
their usage with stream_options.include_usage, which OpenAI sends in the last chunk)."""

from __future__ import annotations

from typing import Any

from tokenfuse.sdk.fuse import Fuse
from tokenfuse.sdk.integrations._metering import ClientProxy, Metered, Usage

_METHODS = ("chat.completions.create", "responses.create", "completions.create", "embeddings.create")


def read_usage(obj: Any, usage: Usage) -> None:
    """Usage from a response, a chat/completions chunk, or a Responses API stream event."""
    if getattr(obj, "type", None) in ("response.completed", "response.incomplete", "response.failed"):
        obj = obj.response
    counts = getattr(obj, "usage", None)
    usage.model = getattr(obj, "model", None) or usage.model
    if counts is None:
        return
    if hasattr(counts, "prompt_tokens"):  # chat, completions, embeddings
        details = getattr(counts, "prompt_tokens_details", None)
        usage.input_tokens = counts.prompt_tokens or 0
        usage.output_tokens = getattr(counts, "completion_tokens", 0) or 0
    else:  # Responses API
        details = getattr(counts, "input_tokens_details", None)
        usage.input_tokens, usage.output_tokens = counts.input_tokens or 0, counts.output_tokens or 0
    usage.cached_tokens = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    usage.seen = True


def _ask_for_stream_usage(kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("stream") and "input" not in kwargs:  # chat/completions stream, not Responses
        options = dict(kwargs.get("stream_options") or {})
        options.setdefault("include_usage", True)
        kwargs = {**kwargs, "stream_options": options}
    return kwargs


def wrap(client: Any, fuse: Fuse) -> Any:
    """The client, metered: every call checks the kill switch first and records its usage."""
    import openai

    metered = Metered(fuse, "openai", read_usage, _ask_for_stream_usage, user_of=lambda kw: kw.get("user"))
    wrap_method = metered.wrap_async if isinstance(client, openai.AsyncOpenAI) else metered.wrap_sync
    return ClientProxy(client, {path: wrap_method for path in _METHODS})
