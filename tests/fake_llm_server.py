"""A local stand-in for the OpenAI and Anthropic HTTP APIs on 127.0.0.1, so the real client
packages can be tested without network. It answers with fixed usage figures (below), as JSON or as
server-sent events when the request says stream, and counts the requests it served."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_CHAT_USAGE = {"prompt_tokens": 123, "completion_tokens": 45, "total_tokens": 168,
                     "prompt_tokens_details": {"cached_tokens": 100}}
OPENAI_RESPONSES_USAGE = {"input_tokens": 77, "output_tokens": 11, "total_tokens": 88,
                          "input_tokens_details": {"cached_tokens": 5},
                          "output_tokens_details": {"reasoning_tokens": 0}}
ANTHROPIC_USAGE = {"input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 300,
                   "cache_creation_input_tokens": 10}
ANTHROPIC_STREAM_OUTPUT_TOKENS = 15


def _chat(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": OPENAI_CHAT_USAGE}


def _chat_chunks(model: str, include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": None}]}
              for word in ("hel", "lo")]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:  # as OpenAI does: only when stream_options.include_usage is set
        chunks.append({**base, "choices": [], "usage": OPENAI_CHAT_USAGE})
    return chunks


def _response(model: str) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "created_at": 1, "model": model, "status": "completed",
            "output": [], "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
            "usage": OPENAI_RESPONSES_USAGE}


def _message(model: str) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": ANTHROPIC_USAGE}


def _message_events(model: str) -> list[dict[str, Any]]:
    start = {**_message(model), "content": [], "stop_reason": None, "usage": {**ANTHROPIC_USAGE, "output_tokens": 1}}
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": ANTHROPIC_STREAM_OUTPUT_TOKENS}},
        {"type": "message_stop"},
    ]


class FakeLLMServer:
    def __init__(self):
        self.requests: list[tuple[str, dict[str, Any]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                server.requests.append((self.path, body))
                model, stream = body.get("model", "unknown"), body.get("stream", False)
                if self.path.endswith("/chat/completions"):
                    if stream:
                        include = (body.get("stream_options") or {}).get("include_usage", False)
                        return self._sse([(None, c) for c in _chat_chunks(model, include)], done=True)
                    return self._json(_chat(model))
                if self.path.endswith("/responses"):
                    if stream:
                        completed = {"type": "response.completed", "sequence_number": 1, "response": _response(model)}
                        return self._sse([("response.completed", completed)], done=False)
                    return self._json(_response(model))
                if self.path.endswith("/messages"):
                    if stream:
                        return self._sse([(e["type"], e) for e in _message_events(model)], done=False)
                    return self._json(_message(model))
                self.send_error(404)

            def _json(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, events: list[tuple[str | None, dict[str, Any]]], done: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for name, payload in events:
                    prefix = f"event: {name}\n" if name else ""
                    self.wfile.write(f"{prefix}data: {json.dumps(payload)}\n\n".encode())
                if done:
                    self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
