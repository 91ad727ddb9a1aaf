"""The OpenAI, Anthropic and LiteLLM integrations with the real client packages against a local
fake HTTP server (tests/fake_llm_server.py): the usage that reaches the usage topic is what the
responses reported, for plain, async and streaming calls; a blocked scope stops the call before
any request is sent."""

from __future__ import annotations

import asyncio
import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch prices online

import anthropic  # noqa: E402
import openai  # noqa: E402

from tests.fake_llm_server import (ANTHROPIC_STREAM_OUTPUT_TOKENS, ANTHROPIC_USAGE, OPENAI_CHAT_USAGE,  # noqa: E402
                                   OPENAI_RESPONSES_USAGE, FakeLLMServer)
from tests.helpers import publish_budget  # noqa: E402
from tests.sdk_helpers import publish_signed, read_usage_to_end  # noqa: E402
from tokenfuse.errors import BudgetExceeded  # noqa: E402
from tokenfuse.kafka.follow import wait_until  # noqa: E402
from tokenfuse.sdk import Fuse, FuseOptions  # noqa: E402
from tokenfuse.sdk.integrations import anthropic as tf_anthropic  # noqa: E402
from tokenfuse.sdk.integrations import openai as tf_openai  # noqa: E402

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = (OPENAI_CHAT_USAGE["prompt_tokens"], OPENAI_CHAT_USAGE["completion_tokens"],
        OPENAI_CHAT_USAGE["prompt_tokens_details"]["cached_tokens"])
ANTHROPIC_INPUT = (ANTHROPIC_USAGE["input_tokens"] + ANTHROPIC_USAGE["cache_read_input_tokens"]
                   + ANTHROPIC_USAGE["cache_creation_input_tokens"])


@pytest.fixture
def server():
    s = FakeLLMServer()
    yield s
    s.close()


@pytest.fixture
def fuse(settings, tmp_path):
    f = Fuse(settings, FuseOptions(org="acme", team="search", agent="bot-int", spool_dir=tmp_path / "spool"))
    assert f.kill_switch.wait_ready(30)
    yield f
    f.close()


@pytest.fixture
def litellm_logger(fuse):
    """A TokenfuseLogger registered with LiteLLM for the test, removed from every list after."""
    import litellm

    from tokenfuse.sdk.integrations.litellm import TokenfuseLogger

    logger = TokenfuseLogger(fuse)
    litellm.callbacks = [*litellm.callbacks, logger]
    yield logger
    litellm.logging_callback_manager.drop_callbacks([logger])


def wait_for_records(fuse: Fuse, count: int, timeout: float = 30) -> None:
    """LiteLLM runs success callbacks on its own threads and tasks: wait until `count` arrived."""
    assert wait_until(lambda: fuse._reporter.stats["delivered"] + len(fuse._reporter._pending) >= count,
                      timeout), fuse.stats


def recorded(fuse: Fuse) -> list[tuple]:
    assert fuse.flush(30)
    return sorted((e["provider"], e["model"], e["input_tokens"], e["output_tokens"], e["cached_tokens"])
                  for e in read_usage_to_end(fuse.settings))


def test_openai_sync_plain_and_streaming(server, fuse):
    client = tf_openai.wrap(openai.OpenAI(api_key="test", base_url=f"{server.url}/v1", max_retries=0), fuse)
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == "hi"
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello"
    client.responses.create(model="gpt-4.1", input="hi")
    with client.responses.create(model="gpt-4.1-mini", input="hi", stream=True) as events:
        assert [e.type for e in events] == ["response.completed"]
    responses = (OPENAI_RESPONSES_USAGE["input_tokens"], OPENAI_RESPONSES_USAGE["output_tokens"],
                 OPENAI_RESPONSES_USAGE["input_tokens_details"]["cached_tokens"])
    assert recorded(fuse) == sorted([("openai", "gpt-4o", *CHAT), ("openai", "gpt-4o-mini", *CHAT),
                                     ("openai", "gpt-4.1", *responses), ("openai", "gpt-4.1-mini", *responses)])
    # The chat stream was asked for its usage (OpenAI only sends it on request).
    assert server.requests[1][1]["stream_options"] == {"include_usage": True}


async def test_openai_async_plain_and_streaming(server, fuse):
    client = tf_openai.wrap(openai.AsyncOpenAI(api_key="test", base_url=f"{server.url}/v1", max_retries=0), fuse)
    await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    async for _ in stream:
        pass
    assert recorded(fuse) == sorted([("openai", "gpt-4o", *CHAT), ("openai", "gpt-4o-mini", *CHAT)])


def test_anthropic_sync_plain_and_streaming(server, fuse):
    client = tf_anthropic.wrap(anthropic.Anthropic(api_key="test", base_url=server.url, max_retries=0), fuse)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=MESSAGES)
    assert message.content[0].text == "hi"
    events = list(client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES, stream=True))
    assert events[-1].type == "message_stop"
    cached = ANTHROPIC_USAGE["cache_read_input_tokens"]
    assert recorded(fuse) == sorted([
        ("anthropic", "claude-sonnet-4-5", ANTHROPIC_INPUT, ANTHROPIC_USAGE["output_tokens"], cached),
        ("anthropic", "claude-haiku-4-5", ANTHROPIC_INPUT, ANTHROPIC_STREAM_OUTPUT_TOKENS, cached)])


async def test_anthropic_async_streaming(server, fuse):
    client = tf_anthropic.wrap(anthropic.AsyncAnthropic(api_key="test", base_url=server.url, max_retries=0), fuse)
    stream = await client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES, stream=True)
    async with stream:
        async for _ in stream:
            pass
    assert recorded(fuse) == [("anthropic", "claude-haiku-4-5", ANTHROPIC_INPUT, ANTHROPIC_STREAM_OUTPUT_TOKENS,
                               ANTHROPIC_USAGE["cache_read_input_tokens"])]


def test_equal_requests_share_a_fingerprint_and_their_content_stays_in_the_runtime(server, fuse, settings):
    openai_client = tf_openai.wrap(openai.OpenAI(api_key="test", base_url=f"{server.url}/v1", max_retries=0), fuse)
    anthropic_client = tf_anthropic.wrap(anthropic.Anthropic(api_key="test", base_url=server.url, max_retries=0), fuse)
    secret = [{"role": "user", "content": "secret-prompt-7731"}]
    openai_client.chat.completions.create(model="gpt-4o", messages=secret, temperature=0)
    list(openai_client.chat.completions.create(temperature=0, messages=secret, model="gpt-4o", stream=True))
    openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0)
    anthropic_client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=secret)
    anthropic_client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=secret)
    assert fuse.flush(30)
    events = sorted(read_usage_to_end(settings), key=lambda e: e["event_time"])
    fps = [e["request_fingerprint"] for e in events]
    assert len(events) == 5 and all(fps)
    assert fps[0] == fps[1] != fps[2] and fps[3] == fps[4] != fps[0]  # streaming or not, same request
    assert not any("secret-prompt" in str(e) for e in events)


def test_blocked_scope_stops_the_call_before_any_request(server, fuse, settings):
    openai_client = tf_openai.wrap(openai.OpenAI(api_key="test", base_url=f"{server.url}/v1", max_retries=0), fuse)
    anthropic_client = tf_anthropic.wrap(anthropic.Anthropic(api_key="test", base_url=server.url, max_retries=0), fuse)
    publish_signed(settings, "model:gpt-4o", "block")
    assert wait_until(lambda: "model:gpt-4o" in fuse.kill_switch.states, 10)
    with pytest.raises(BudgetExceeded) as info:
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.scope == "model:gpt-4o" and info.value.budget_id == "test-budget"
    anthropic_client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=MESSAGES)  # other model: allowed
    assert [path for path, _ in server.requests] == ["/v1/messages"]


async def test_litellm_logger_records_sync_async_and_streaming_calls(server, fuse, settings, litellm_logger):
    import litellm
    from litellm.proxy._types import UserAPIKeyAuth

    common = {"api_base": f"{server.url}/v1", "api_key": "test", "messages": MESSAGES}
    litellm.completion(model="openai/gpt-4o", **common)
    await litellm.acompletion(model="openai/gpt-4o-mini", **common)
    for _ in litellm.completion(model="openai/gpt-4o", stream=True, stream_options={"include_usage": True}, **common):
        pass
    await asyncio.to_thread(wait_for_records, fuse, 3)
    usage = sorted(e[:4] for e in recorded(fuse))
    assert usage == sorted([("openai", "gpt-4o", CHAT[0], CHAT[1])] * 2 + [("openai", "gpt-4o-mini", CHAT[0], CHAT[1])])
    fingerprints = {(e["model"], e["request_fingerprint"]) for e in read_usage_to_end(fuse.settings)}
    assert len(fingerprints) == 2 and all(fp for _, fp in fingerprints)  # the two gpt-4o calls: one request

    publish_signed(settings, "agent:bot-int", "block")
    assert wait_until(lambda: "agent:bot-int" in fuse.kill_switch.states, 10)
    with pytest.raises(BudgetExceeded):
        await litellm_logger.async_pre_call_hook(UserAPIKeyAuth(), None, {"model": "gpt-4o"}, "completion")


async def test_litellm_usage_keeps_the_run_of_the_call_for_sync_and_async_streams(server, fuse, litellm_logger):
    import litellm

    common = {"api_base": f"{server.url}/v1", "api_key": "test", "messages": MESSAGES, "stream": True,
              "stream_options": {"include_usage": True}}
    with fuse.run("run-sync-stream"):
        for _ in litellm.completion(model="openai/gpt-4o", **common):
            pass
        litellm.completion(model="openai/gpt-4o-mini", **{**common, "stream": False})
    async with fuse.run("run-async-stream"):
        async for _ in await litellm.acompletion(model="openai/gpt-4.1", **common):
            pass
    await asyncio.to_thread(wait_for_records, fuse, 3)
    assert fuse.flush(30)
    runs = sorted((e["model"], e["run"]) for e in read_usage_to_end(fuse.settings))
    assert runs == [("gpt-4.1", "run-async-stream"), ("gpt-4o", "run-sync-stream"), ("gpt-4o-mini", "run-sync-stream")]


def test_a_request_whose_max_tokens_would_cross_a_run_budget_is_refused_before_it_is_sent(server, settings, tmp_path):
    publish_budget(settings, id="per-run", scope="run:*", metric="total_tokens", window="1h", limit=1000)
    with Fuse(settings, FuseOptions(agent="bot-max", spool_dir=tmp_path / "spool-max")) as fuse:
        assert fuse.wait_ready(30)
        client = tf_openai.wrap(openai.OpenAI(api_key="test", base_url=f"{server.url}/v1", max_retries=0), fuse)
        with fuse.run("run-max"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)  # spends 168
            with pytest.raises(BudgetExceeded) as info:  # 168 + 1 (prompt estimate) + 900 > 1000
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=900)
            assert (info.value.scope, info.value.budget_id, info.value.spent, info.value.limit) == \
                ("run:run-max", "per-run", CHAT[0] + CHAT[1], 1000)
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=800)  # fits
        with fuse.run("run-other"):  # another run has its own budget
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=900)
    assert [body.get("max_tokens") or body.get("max_completion_tokens") for _, body in server.requests] == [50, 800, 900]
