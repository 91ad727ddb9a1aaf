"""LiteLLM: `litellm.callbacks = [TokenfuseLogger(fuse)]`.

- Usage: every successful call (sync, async, streaming; SDK or proxy) is recorded from LiteLLM's
  standard logging payload, with LiteLLM's own cost when it knows one, and the fingerprint of the
  request (model, messages, tools and sampling parameters LiteLLM passes the callback).
- Runs: the run of the `fuse.run()` a call is made in is noted when LiteLLM logs the call's start
  (on the caller's thread) and recorded with its usage, which LiteLLM reports from its own
  threads for sync streams (where the caller's context is gone).
- Refusing calls: `async_pre_call_hook` is LiteLLM proxy's pre-call hook; it raises BudgetExceeded
  for a blocked scope (or a request whose max_tokens would cross a local limit), so the proxy
  rejects the request. Every proxy replica of a fleet reads the
  same control topic, so they share one exact budget. (LiteLLM swallows exceptions from its
  SDK-side logging hooks, so in-process `litellm.completion` callers call `fuse.check()` first.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from tokenfuse.sdk.fingerprint import request_fingerprint
from tokenfuse.sdk.fuse import Fuse
from tokenfuse.sdk.integrations._metering import estimate_input_tokens, max_output_tokens, record_after_call

# Where the call's run is kept in LiteLLM's per-call details (the dict every callback of the call gets).
RUN_KEY = "tokenfuse_run"


class TokenfuseLogger(CustomLogger):
    def __init__(self, fuse: Fuse, **kwargs: Any):
        super().__init__(**kwargs)
        self.fuse = fuse
        # LiteLLM keeps one logger per class and public str/int attributes, silently ignoring
        # another: this makes the logger of each Fuse distinct.
        self.fuse_id = id(fuse)

    def log_pre_api_call(self, model, messages, kwargs):
        run = self.fuse.current_run
        if run is not None:
            kwargs[RUN_KEY] = run

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        payload = kwargs.get("standard_logging_object") or {}
        usage = getattr(response_obj, "usage", None)
        if usage is None:
            return
        details = getattr(usage, "prompt_tokens_details", None)
        cost = payload.get("response_cost")
        record_after_call(
            self.fuse, payload.get("model") or kwargs.get("model") or "unknown",
            usage.prompt_tokens or 0, usage.completion_tokens or 0,
            cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0,
            cost_micro_usd=round(cost * 1_000_000) if cost else None,
            provider=payload.get("custom_llm_provider") or None,
            user=payload.get("end_user") or None,
            run=kwargs.get(RUN_KEY),  # None: the context's run, where LiteLLM kept the context
            request_fingerprint=request_fingerprint({**(kwargs.get("optional_params") or {}), **kwargs}),
        )

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.log_success_event(kwargs, response_obj, start_time, end_time)  # record() never blocks

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        """Proxy hook: raise BudgetExceeded (the proxy answers with an error) if blocked; wait
        out a throttle state's delay."""
        delay_ms = self.fuse.check(model=data.get("model"), user=data.get("user"),
                                   max_tokens=max_output_tokens(data), input_tokens=estimate_input_tokens(data))
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return data
