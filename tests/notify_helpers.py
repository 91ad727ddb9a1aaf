"""Helpers for the notifier tests: a real HTTP receiver on 127.0.0.1 that checks signatures like a
user's would, a real SMTP server, producing alerts and signed control states."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.control.signing import encode_signed
from tokenfuse.errors import SignatureError
from tokenfuse.kafka.codec import codec
from tokenfuse.notify.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook

SECRET = "receiver-secret"


@dataclass
class Received:
    id: str
    body: dict[str, Any]
    signature_ok: bool


@dataclass
class Receiver:
    """Records every POST; answers `status` (set it to 500 or 400 to fail deliveries)."""

    port: int
    status: int = 200
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    verify_webhook(SECRET.encode(), raw, self.headers.get(TIMESTAMP_HEADER),
                                   self.headers.get(SIGNATURE_HEADER), time.time())
                    ok = True
                except SignatureError:
                    ok = False
                if receiver.status == 200:
                    with receiver.lock:
                        receiver.got.append(Received(self.headers.get(ID_HEADER, ""), json.loads(raw), ok))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self.got]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def alert(n: int, scope: str = "agent:bot-1", **extra: Any) -> dict[str, Any]:
    return {"alert_id": f"b{n}|{scope}|0|100", "kind": "threshold", "scope": scope, "budget_id": f"b{n}",
            "threshold_percent": 100, "action": "alert", "metric": "cost_micro_usd", "spent": 12_300_000,
            "limit": 10_000_000, "window_end": int(time.time() * 1000) + 3_600_000,
            "created_at": int(time.time() * 1000), **extra}


def produce_alerts(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    p = Producer(settings.kafka_config)
    for record in alerts:
        p.produce(settings.topic("alerts"), key=record["scope"].encode(), value=codec("Alert").encode(record))
    assert p.flush(30) == 0


def produce_state(settings: Settings, scope: str, state: str, *, signed: bool = True, **extra: Any) -> None:
    now = int(time.time() * 1000)
    record = {"scope": scope, "state": state, "budget_id": "b-team", "reason": f"test {state}",
              "metric": "cost_micro_usd", "spent": 12_300_000, "limit": 10_000_000,
              "until": now + 3_600_000 if state == "block" else None, "issued_at": now, **extra}
    value = (encode_signed({"version": now, **record}, settings.control_signer()) if signed
             else codec("ControlState").encode(record))
    p = Producer(settings.producer_config)
    p.produce(settings.topic("control"), key=scope.encode(), value=value)
    assert p.flush(30) == 0


def config_text(url: str, *, retries: int = 8, backoff: str = "100ms", rate: int = 6000, burst: int = 100,
                disable_after: int = 5, extra_channels: str = "", extra_routes: str = "") -> str:
    return f"""\
notifications:
  dashboard_url: http://127.0.0.1:6070
  channels:
    hook: {{type: webhook, url: "{url}", secret_env: TEST_HOOK_SECRET, timeout: 2s,
            rate_per_minute: {rate}, burst: {burst}}}
{extra_channels}
  routes:
    - channels: [hook]
{extra_routes}
  delivery: {{retries: {retries}, backoff: {backoff}, max_backoff: 1s, disable_after: {disable_after}}}
"""


def caught_up(settings: Settings) -> bool:
    """Has the notifier committed every alert and control record (each delivered or dead-lettered)?
    After that, nothing more can arrive at a receiver."""
    consumer = Consumer({**settings.kafka_config, "group.id": f"{settings.app_id}-notify"})
    try:
        for topic in (settings.topic("alerts"), settings.topic("control")):
            parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
            for tp in consumer.committed(parts, timeout=10):
                if max(tp.offset, 0) != consumer.get_watermark_offsets(tp, timeout=10)[1]:
                    return False
        return True
    except KafkaException:  # e.g. "not leader" for a moment after the topics were created: ask again
        return False
    finally:
        consumer.close()
