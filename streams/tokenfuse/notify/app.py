"""The notifier role: alerts and control states from Kafka to people, at least once, never a storm.

- Its own consumer group (`<app_id>-notify`), read_committed (the worker writes in
  transactions), no auto-commit: a record's offset is committed only after every message it
  caused was delivered or dead-lettered (offsets.py), so a crash or restart re-reads it.
- Control states are verified with the control key; unsigned or forged ones are skipped.
- What it learnt (scope states, alert ids told, messages each channel got) is saved before each
  commit (state.py): a restart neither forgets a block nor repeats what a channel already got,
  except a message delivered in the instant before a crash (at least once).
- Dead letters go to `<prefix>.notify-dlq` (key = channel, JSON value, reason in a header).
- Run one notifier per deployment: its state follows the records it read, not partitions that a
  rebalance would move (a second instance would be a standby that takes over on a crash).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message as KafkaMessage, Producer, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.control.signing import decode_verified
from tokenfuse.errors import BrokerUnavailable, DecodeError, SignatureError
from tokenfuse.kafka.codec import codec
from tokenfuse.notify.channels import Sender, sender_for
from tokenfuse.notify.config import NotifyConfig
from tokenfuse.notify.delivery import Outbox
from tokenfuse.notify.messages import Message, webhook_body
from tokenfuse.notify.offsets import OffsetTracker
from tokenfuse.notify.schedule import Digests, Reminders, targets
from tokenfuse.notify.state import SavedState, load_state, save_state
from tokenfuse.notify.transitions import Skipped, Source, Tracker, Transition
from tokenfuse.observability.metrics import NotifierMetrics

log = logging.getLogger(__name__)
MAX_PENDING = 10_000  # stop reading while this many messages wait (a receiver down for long)
POLL_S = 0.2


class Notifier:
    def __init__(self, settings: Settings, config: NotifyConfig, senders: Mapping[str, Sender] | None = None):
        self.settings, self.config = require(settings, "notifier"), config
        self.verifier = settings.control_verifier()
        self.topics = {settings.topic("alerts"): "alerts", settings.topic("control"): "control"}
        self.group = f"{settings.app_id}-notify"
        self.state_path = settings.data_dir / "notify" / f"{self.group}.json"
        saved = load_state(self.state_path)
        self.tracker = Tracker(config.delivery.stale_after_ms, saved.scopes, saved.seen)
        self.delivered_ids = saved.delivered
        self.metrics = NotifierMetrics.create()
        self.offsets = OffsetTracker()
        self.digests, self.reminders = Digests(), Reminders()
        senders = senders or {name: sender_for(c, config.dashboard_url) for name, c in config.channels.items()}
        self.outbox = Outbox(senders, config.channels, config.delivery, self, self.metrics)
        self.dlq = Producer({**settings.kafka_config, "enable.idempotence": True})
        self.consumer = Consumer({
            **settings.kafka_config, "group.id": self.group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000,
        })
        self._dirty = False

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        self.consumer.subscribe(list(self.topics), on_revoke=self._revoked)
        on_ready()
        paused = False
        try:
            while not stop.is_set():
                if paused != (self.outbox.pending() > MAX_PENDING):
                    paused = not paused
                    (self.consumer.pause if paused else self.consumer.resume)(self.consumer.assignment())
                for msg in self.consumer.consume(500, timeout=self._poll_timeout()):
                    self._take(msg)
                now = time.monotonic()
                for message in self.digests.due(now) + self.reminders.due(now, _now_ms()):
                    self.outbox.add(message)
                self.outbox.run_due()
                self._commit()
        finally:
            self._commit()
            self.consumer.close()
            self.dlq.flush(10)

    def _poll_timeout(self) -> float:
        due = [d for d in (self.outbox.next_due(), self.digests.next_due(), self.reminders.next_due()) if d]
        return max(0.0, min([POLL_S] + [d - time.monotonic() for d in due]))

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.offsets.forget([(p.topic, p.partition) for p in partitions])

    def _take(self, msg: KafkaMessage) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("kafka: %s", msg.error())
            return
        source = Source(msg.topic(), msg.partition(), msg.offset())
        result = self._transition(self.topics[msg.topic()], msg.value(), source)
        if isinstance(result, Skipped):
            self.metrics.skipped.labels(result.reason).inc()
            self.offsets.read(source, 0)
            return
        self.metrics.transitions.labels(result.event).inc()
        self.offsets.read(source, self._route(result))

    def _transition(self, kind: str, value: bytes | None, source: Source) -> Transition | Skipped:
        try:
            if kind == "alerts":
                return self.tracker.alert(codec("Alert").decode(value), source, _now_ms())
            return self.tracker.control(decode_verified(value or b"", self.verifier), source, _now_ms())
        except SignatureError as exc:
            log.warning("skipping control state at %s[%d]@%d: %s", source.topic, source.partition, source.offset, exc)
            return Skipped("unsigned")
        except DecodeError as exc:
            log.warning("skipping %s[%d]@%d: %s", source.topic, source.partition, source.offset, exc.reason)
            return Skipped("undecodable")

    def _route(self, t: Transition) -> int:
        """Queue `t` for its channels; return how many deliveries its record now waits for."""
        chosen = targets(self.config.routes, t)
        if not chosen:
            self.metrics.skipped.labels("unrouted").inc()
        waiting = 0
        now = time.monotonic()
        for channel, route in chosen.items():
            self.reminders.track(channel, route, t, now)
            if f"{channel}|{t.id}" in self.delivered_ids:
                continue  # delivered before a restart; its offset was not committed yet
            waiting += 1
            if route.digest_ms:
                self.digests.add(channel, route.digest_ms, t, now)
            else:
                self.outbox.add(Message(id=t.id, channel=channel, notices=(t,), sources=(t.source,)))
        return waiting

    # Outcome: called by the outbox.
    def delivered(self, msg: Message) -> None:
        self._finished(msg)

    def dead_lettered(self, msg: Message, reason: str, attempts: int) -> None:
        record = {"id": msg.id, "channel": msg.channel, "reason": reason, "attempts": attempts,
                  "failed_at": _now_ms(), "message": json.loads(webhook_body(msg, self.config.dashboard_url))}
        self.dlq.produce(self.settings.topic("notify-dlq"), key=msg.channel.encode(),
                         value=json.dumps(record).encode(), headers=[("reason", reason.encode())])
        if self.dlq.flush(15):
            raise BrokerUnavailable(f"could not write the dead letter of {msg.id} to "
                                    f"{self.settings.topic('notify-dlq')}; its records will be read again")
        self._finished(msg)

    def _finished(self, msg: Message) -> None:
        if msg.form != "reminder":
            for t in msg.notices:
                self.delivered_ids[f"{msg.channel}|{t.id}"] = _now_ms()
            self._dirty = True
        for source in msg.sources:
            self.offsets.done(source)

    def _commit(self) -> None:
        """Save the state, then commit the offsets whose deliveries are all done."""
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(self.consumer.assignment())}
        moved = self.offsets.to_commit(positions)
        if not moved and not self._dirty:
            return
        now = _now_ms()
        self.tracker.commit(moved, now)
        horizon = now - self.config.delivery.stale_after_ms
        self.delivered_ids = {k: at for k, at in self.delivered_ids.items() if at >= horizon}
        save_state(self.state_path, SavedState(self.tracker.scopes, self.tracker.seen, self.delivered_ids))
        self._dirty = False
        if moved:
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in moved.items()],
                                     asynchronous=False)
            except KafkaException as exc:
                log.warning("offset commit failed (records will be re-read; delivered ones are skipped): %s", exc)


def _now_ms() -> int:
    return int(time.time() * 1000)
