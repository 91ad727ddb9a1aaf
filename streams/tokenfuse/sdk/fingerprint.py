"""Request fingerprints: a hash of what makes two LLM calls the same request, for the worker's
loop detector. Only the hash leaves the runtime, never the content.

What counts (REQUEST_KEYS): the model, the conversation (messages / prompt / input / system /
instructions), the tools offered and the sampling settings. What does not: transport and
bookkeeping (stream, stream_options, user, metadata, timeouts, headers, API keys). Values are
normalised to JSON with sorted keys, so key order, SDK objects vs plain dicts and tuples vs lists
make no difference.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

REQUEST_KEYS = (
    "model", "messages", "prompt", "input", "system", "instructions", "tools", "tool_choice", "functions",
    "function_call", "temperature", "top_p", "top_k", "max_tokens", "max_output_tokens", "max_completion_tokens",
    "response_format", "text", "stop", "stop_sequences", "seed", "n", "presence_penalty", "frequency_penalty",
    "reasoning", "reasoning_effort", "thinking",
)


def request_fingerprint(request: Mapping[str, Any]) -> str:
    """128-bit hex hash of the normalised request (the keys of REQUEST_KEYS that are set)."""
    chosen = {k: request[k] for k in REQUEST_KEYS if request.get(k) is not None}
    text = json.dumps(chosen, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    """SDK objects (pydantic models, dataclass-like objects) as plain data; anything else as text."""
    for dump in ("model_dump", "dict", "to_dict"):
        method = getattr(value, dump, None)
        if callable(method):
            try:
                return method()
            except TypeError:
                continue
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)
