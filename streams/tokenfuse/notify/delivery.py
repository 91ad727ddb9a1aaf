"""The outbox: per-channel queues with retries, backoff, a rate limit, and disabling.

- Each channel sends in order, one message at a time: while its head waits for a retry, the
  rest of its queue waits too, so a receiver that is down gets one attempt per backoff step, not
  one per queued alert, and it receives them in order once it is back.
- Backoff doubles from `backoff` up to `max_backoff`; after `retries` retries (or at once for
  an error that cannot heal, like HTTP 400) the message is dead-lettered.
- `disable_after` messages in a row dead-lettered on a channel disable it: what is queued for
  it or comes later is dead-lettered at once (reason "channel disabled"), and the log and the
  `tokenfuse_notify_channel_disabled` gauge say so. A restart of the notifier re-enables it.
- A token bucket per channel (`rate_per_minute`, `burst`) keeps a flood from becoming a storm:
  messages wait, none is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from tokenfuse.notify.channels import DeliveryFailed, Sender
from tokenfuse.notify.config import ChannelConfig, DeliveryPolicy
from tokenfuse.notify.messages import Message
from tokenfuse.observability.metrics import NotifierMetrics

log = logging.getLogger(__name__)


class Outcome(Protocol):
    """Told when a message leaves the outbox, one way or the other."""

    def delivered(self, msg: Message) -> None: ...

    def dead_lettered(self, msg: Message, reason: str, attempts: int) -> None: ...


@dataclass
class TokenBucket:
    rate_per_s: float
    capacity: float
    tokens: float
    at: float

    @classmethod
    def per_minute(cls, rate: int, burst: int, now: float) -> "TokenBucket":
        return cls(rate / 60.0, float(burst), float(burst), now)

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


@dataclass
class _Queued:
    msg: Message
    attempts: int = 0
    due: float = 0.0


@dataclass
class _Channel:
    sender: Sender
    bucket: TokenBucket
    items: deque[_Queued] = field(default_factory=deque)
    failed_in_a_row: int = 0
    disabled: bool = False


class Outbox:
    def __init__(self, senders: Mapping[str, Sender], configs: Mapping[str, ChannelConfig], policy: DeliveryPolicy,
                 outcome: Outcome, metrics: NotifierMetrics, clock: Callable[[], float] = time.monotonic):
        self.policy, self.outcome, self.metrics, self.clock = policy, outcome, metrics, clock
        now = clock()
        self.channels = {name: _Channel(sender, TokenBucket.per_minute(configs[name].rate_per_minute,
                                                                       configs[name].burst, now))
                         for name, sender in senders.items()}
        for name in self.channels:
            metrics.channel_disabled.labels(name).set(0)

    def add(self, msg: Message) -> None:
        self.channels[msg.channel].items.append(_Queued(msg))
        self.metrics.pending.inc()

    def pending(self) -> int:
        return sum(len(c.items) for c in self.channels.values())

    def disabled(self) -> list[str]:
        return [name for name, c in self.channels.items() if c.disabled]

    def next_due(self) -> float | None:
        """Monotonic time of the earliest queued head, or None when nothing waits."""
        return min((c.items[0].due for c in self.channels.values() if c.items), default=None)

    def run_due(self) -> None:
        for channel in self.channels.values():
            self._drain(channel)

    def _drain(self, channel: _Channel) -> None:
        while channel.items:
            head = channel.items[0]
            if channel.disabled:
                self._finish(channel, "channel disabled after repeated failed deliveries", dead=True)
                continue
            now = self.clock()
            if head.due > now:
                return
            wait = channel.bucket.take(now)
            if wait:
                head.due = now + wait
                return
            try:
                channel.sender.send(head.msg)
            except DeliveryFailed as exc:
                head.attempts += 1
                self.metrics.failures.labels(channel.sender.name).inc()
                if exc.retryable and head.attempts <= self.policy.retries:
                    head.due = now + self._backoff(head.attempts)
                    log.warning("%s (attempt %d, retrying in %.1fs)", exc, head.attempts, head.due - now)
                    return
                self._finish(channel, exc.reason, dead=True)
                self._count_failure(channel)
                continue
            channel.failed_in_a_row = 0
            self._finish(channel, "", dead=False)

    def _backoff(self, attempts: int) -> float:
        return min(self.policy.backoff_ms * 2 ** (attempts - 1), self.policy.max_backoff_ms) / 1000

    def _finish(self, channel: _Channel, reason: str, dead: bool) -> None:
        item = channel.items.popleft()
        self.metrics.pending.dec()
        if dead:
            self.metrics.dead_letters.labels(channel.sender.name).inc()
            log.error("giving up on %s to channel %s after %d attempt(s): %s", item.msg.id, channel.sender.name,
                      item.attempts, reason)
            self.outcome.dead_lettered(item.msg, reason, item.attempts)
        else:
            self.metrics.deliveries.labels(channel.sender.name).inc()
            self.outcome.delivered(item.msg)

    def _count_failure(self, channel: _Channel) -> None:
        channel.failed_in_a_row += 1
        if channel.failed_in_a_row >= self.policy.disable_after and not channel.disabled:
            channel.disabled = True
            self.metrics.channel_disabled.labels(channel.sender.name).set(1)
            log.error("channel %s disabled: %d messages in a row failed every retry; restart the notifier "
                      "to enable it again", channel.sender.name, channel.failed_in_a_row)
