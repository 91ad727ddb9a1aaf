"""`tokenfuse notify` against the real broker, a real HTTP receiver on 127.0.0.1 (checking
signatures the way docs/notifications.md tells users to) and a real SMTP server."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import UsageProducer, free_port, publish_budget, read_all, usage_event
from tests.notify_helpers import SECRET, Receiver, alert, caught_up, config_text, produce_alerts, produce_state
from tokenfuse.config.yamlnodes import compose_text
from tokenfuse.control.manual import publish_manual_state
from tokenfuse.dev.process import RoleProcess
from tokenfuse.kafka.follow import wait_until
from tokenfuse.notify.app import Notifier
from tokenfuse.notify.config import parse_notifications

ENV = {"TEST_HOOK_SECRET": SECRET}


class Running:
    """A Notifier in a thread of this process."""

    def __init__(self, settings, text: str):
        self.notifier = Notifier(settings, parse_notifications(compose_text(text, "n.yaml"), "n.yaml", ENV))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.notifier.run, args=(self.stop,), daemon=True)

    def metric(self, name: str, **labels: str) -> float:
        return self.notifier.metrics.registry.get_sample_value(name, labels) or 0.0

    def __enter__(self) -> "Running":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def receiver():
    r = Receiver(free_port()).start()
    yield r
    r.stop()


def test_every_alert_and_block_is_delivered_once_signed(settings, receiver):
    alerts = [alert(n) for n in range(20)]
    produce_alerts(settings, alerts + alerts[:5])  # the worker re-publishing after a crash: same ids
    produce_state(settings, "team:acme/search", "warn")
    produce_state(settings, "team:acme/search", "block")
    produce_state(settings, "team:acme/search", "block")  # the same level again: nothing new
    produce_state(settings, "team:acme/search", "allow")
    produce_state(settings, "agent:mallory", "block", signed=False)
    with Running(settings, config_text(receiver.url)) as running:
        assert wait_until(lambda: caught_up(settings), 30), receiver.ids()
        ids = receiver.ids()
        assert running.metric("tokenfuse_notify_skipped_total", reason="unsigned") == 1
        assert running.metric("tokenfuse_notify_skipped_total", reason="duplicate") == 5
    assert sorted(i for i in ids if i.startswith("fired:")) == sorted(f"fired:{a['alert_id']}" for a in alerts)
    assert Counter(i.split(":")[0] for i in ids) == {"fired": 20, "blocked": 1, "released": 1}
    assert all(r.signature_ok for r in receiver.got)
    blocked = next(r.body for r in receiver.got if r.body["event"] == "blocked")
    assert blocked["scope"] == "team:acme/search" and blocked["severity"] == "critical"
    assert blocked["summary"].startswith("Blocked team:acme/search: $12.30 of $10.00 (123%), budget b-team")
    assert blocked["dashboard_url"] == "http://127.0.0.1:6070/scope?key=team%3Aacme%2Fsearch"


def test_a_receiver_down_for_a_while_gets_everything_after_none_lost(settings):
    receiver = Receiver(free_port())  # nothing listens on its port yet
    alerts = [alert(n) for n in range(10)]
    with Running(settings, config_text(receiver.url, retries=20)) as running:
        produce_alerts(settings, alerts)
        assert wait_until(lambda: running.metric("tokenfuse_notify_failures_total", channel="hook") >= 3, 30)
        receiver.start()
        try:
            assert wait_until(lambda: caught_up(settings), 30), receiver.ids()
            assert sorted(receiver.ids()) == sorted(f"fired:{a['alert_id']}" for a in alerts)
            assert all(r.signature_ok for r in receiver.got)
            assert running.metric("tokenfuse_notify_dead_letters_total", channel="hook") == 0
        finally:
            receiver.stop()


def test_failed_deliveries_are_dead_lettered_and_the_channel_disabled(settings, receiver):
    receiver.status = 400  # a receiver that refuses: never heals, no retry helps
    with Running(settings, config_text(receiver.url, disable_after=2)) as running:
        produce_alerts(settings, [alert(n) for n in range(4)])
        dead = read_all(settings, "notify-dlq", json.loads, until=lambda r: len(r) >= 4, timeout=30)
        assert wait_until(lambda: running.metric("tokenfuse_notify_channel_disabled", channel="hook") == 1, 10)
    assert sorted(d["id"] for _, d, _ in dead) == sorted(f"fired:{alert(n)['alert_id']}" for n in range(4))
    reasons = Counter(d["reason"] for _, d, _ in dead)
    assert reasons == {"HTTP 400 Bad Request": 2, "channel disabled after repeated failed deliveries": 2}
    key, record, headers = dead[0]
    assert key == b"hook" and record["channel"] == "hook" and record["message"]["event"] == "fired"
    assert dict(headers)["reason"].decode() == record["reason"]


def test_slack_gets_a_readable_message_and_email_a_digest(settings, receiver):
    mails: list[str] = []

    class Mailbox:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
            mails.append(envelope.content.decode())
            return "250 OK"

    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    channels = (f'    chat: {{type: slack, url: "{receiver.url}"}}\n'
                f"    mail: {{type: email, smtp_host: 127.0.0.1, smtp_port: {smtp.port}, from: fuse@example.com, "
                "to: [oncall@example.com]}\n")
    routes = ("    - {channels: [chat], events: [blocked]}\n"
              "    - {channels: [mail], events: [fired], digest: 1s}\n")
    text = config_text(receiver.url, extra_channels=channels, extra_routes=routes).replace(
        "    - channels: [hook]\n", "")
    try:
        with Running(settings, text):
            produce_alerts(settings, [alert(n) for n in range(3)])
            produce_state(settings, "team:acme/search", "block")
            assert wait_until(lambda: caught_up(settings), 30)
    finally:
        smtp.stop()
    [slack] = [r.body for r in receiver.got]
    assert slack["text"].startswith("Blocked team:acme/search: $12.30 of $10.00 (123%)")
    line = slack["blocks"][1]["text"]["text"]
    assert "<http://127.0.0.1:6070/scope?key=team%3Aacme%2Fsearch|team:acme/search>" in line and "until" in line
    [mail] = mails
    assert "Subject: tokenfuse digest: 3 notifications" in mail and "To: oncall@example.com" in mail
    assert mail.count("Alert agent:bot-1: $12.30 of $10.00 (123%)") == 3


def test_a_notifier_killed_mid_stream_delivers_each_at_least_once_without_a_storm(settings, receiver, tmp_path):
    settings = settings.model_copy(update={"notify_metrics_port": free_port()})
    config = tmp_path / "notifications.yaml"
    config.write_text(config_text(receiver.url, rate=1200, burst=1))  # 20 per second: the kill lands mid-stream
    alerts = [alert(n) for n in range(60)]
    produce_alerts(settings, alerts)
    notifier = RoleProcess("notify", settings, tmp_path / "notify.log", str(config), extra_env=ENV).start()
    try:
        assert wait_until(lambda: len(receiver.ids()) >= 15, 30), notifier.tail()
        notifier.kill()
        before = len(receiver.ids())
        assert before < 60
        notifier.start()
        assert wait_until(lambda: caught_up(settings), 60), notifier.tail()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.notify_metrics_port}/metrics",
                                         timeout=5).read().decode()
    finally:
        notifier.stop()
    ids = receiver.ids()
    assert set(ids) == {f"fired:{a['alert_id']}" for a in alerts}
    duplicates = len(ids) - len(set(ids))
    assert duplicates <= 1, f"{duplicates} duplicates after one crash"
    assert all(r.signature_ok for r in receiver.got)
    assert 'tokenfuse_notify_deliveries_total{channel="hook"}' in metrics
    assert 'tokenfuse_notify_channel_disabled{channel="hook"} 0.0' in metrics


def test_the_state_file_survives_a_clean_restart_so_a_release_is_still_told(settings, receiver):
    text = config_text(receiver.url)
    produce_state(settings, "agent:bot-9", "block")
    with Running(settings, text):
        assert wait_until(lambda: caught_up(settings), 30)
    produce_state(settings, "agent:bot-9", "allow")
    with Running(settings, text):
        assert wait_until(lambda: caught_up(settings), 30)
    assert [i.split(":")[0] for i in receiver.ids()] == ["blocked", "released"]
    assert Path(settings.data_dir / "notify" / f"{settings.app_id}-notify.json").exists()


def test_the_worker_crossing_a_budget_reaches_the_receiver_as_fired_and_blocked_then_released(
        settings, receiver, tmp_path):
    publish_budget(settings, id="per-agent", scope="agent:*", metric="total_tokens", window="1h", limit=5000,
                   thresholds=[{"percent": 80, "action": "alert"}, {"percent": 100, "action": "block"}])
    usage = UsageProducer(settings)
    with RoleProcess("worker", settings, tmp_path / "worker.log"), Running(settings, config_text(receiver.url)):
        for _ in range(6):
            usage.send(usage_event("runaway", 1000))
        usage.flush()
        assert wait_until(lambda: len(receiver.ids()) >= 3, 60), receiver.ids()
        publish_manual_state(settings, "agent:runaway", "allow", "raised by hand")
        assert wait_until(lambda: any(i.startswith("released:") for i in receiver.ids()), 30), receiver.ids()
        assert wait_until(lambda: caught_up(settings), 30)
    by_event = {r.body["event"] + str(r.body.get("threshold_percent") or ""): r.body for r in receiver.got}
    assert sorted(by_event) == ["blocked", "fired100", "fired80", "released"]
    assert by_event["blocked"]["scope"] == "agent:runaway" and by_event["blocked"]["budget_id"] == "per-agent"
    assert by_event["fired80"]["severity"] == "info" and by_event["fired100"]["severity"] == "critical"
    assert by_event["released"]["kind"] == "manual"
    assert all(r.signature_ok for r in receiver.got)
