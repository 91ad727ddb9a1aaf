"""Messages that are not one-transition-one-message: digests and reminders.

- A route with `digest: 10m` collects its transitions per channel and sends one message when
  the first of them has waited that long: a noisy scope pages once per interval. The records
  behind a digest are committed only once it is delivered.
- A route with `renotify: 1h` repeats a fired alert or a block every hour while it lasts: until
  it is cleared or released, or its window (or block) ends by itself. Reminders live in memory:
  a restarted notifier reminds again from the next transition on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tokenfuse.notify.config import Route
from tokenfuse.notify.messages import Message
from tokenfuse.notify.transitions import Transition


def targets(routes: tuple[Route, ...], t: Transition) -> dict[str, Route]:
    """Channel -> the route that sends `t` there. A channel named by several matching routes gets
    the transition once, immediately if any of them sends immediately."""
    chosen: dict[str, Route] = {}
    for route in routes:
        if route.matches(t):
            for channel in route.channels:
                if channel not in chosen or chosen[channel].digest_ms and not route.digest_ms:
                    chosen[channel] = route
    return chosen


@dataclass
class _Digest:
    started: float
    every_s: float
    notices: list[Transition] = field(default_factory=list)


@dataclass
class Digests:
    buffers: dict[str, _Digest] = field(default_factory=dict)  # by channel

    def add(self, channel: str, every_ms: int, t: Transition, now: float) -> None:
        self.buffers.setdefault(channel, _Digest(now, every_ms / 1000)).notices.append(t)

    def due(self, now: float) -> list[Message]:
        out = []
        for channel, digest in list(self.buffers.items()):
            if now - digest.started >= digest.every_s:
                del self.buffers[channel]
                ids = "\n".join(t.id for t in digest.notices).encode()
                out.append(Message(id=f"digest:{hashlib.sha256(ids).hexdigest()[:24]}", channel=channel,
                                   notices=tuple(digest.notices), form="digest",
                                   sources=tuple(t.source for t in digest.notices if t.source)))
        return out

    def next_due(self) -> float | None:
        return min((d.started + d.every_s for d in self.buffers.values()), default=None)


@dataclass
class _Reminder:
    transition: Transition
    every_s: float
    next_at: float
    count: int = 0


def _subject(t: Transition) -> str:
    """What a transition is about: a clear or release ends the reminders of its fire or block."""
    if t.event in ("blocked", "released"):
        return f"block|{t.scope}"
    return f"{t.kind}|{t.scope}|{t.budget_id}"


@dataclass
class Reminders:
    active: dict[tuple[str, str], _Reminder] = field(default_factory=dict)  # (channel, subject)

    def track(self, channel: str, route: Route, t: Transition, now: float) -> None:
        key = (channel, _subject(t))
        if t.event in ("cleared", "released"):
            self.active.pop(key, None)
        elif route.renotify_ms:
            self.active[key] = _Reminder(t, route.renotify_ms / 1000, now + route.renotify_ms / 1000)

    def due(self, now: float, now_ms: int) -> list[Message]:
        out = []
        for key, reminder in list(self.active.items()):
            t = reminder.transition
            if t.ends_at is not None and t.ends_at <= now_ms:
                del self.active[key]
            elif reminder.next_at <= now:
                reminder.count += 1
                reminder.next_at = now + reminder.every_s
                out.append(Message(id=f"{t.id}#reminder-{reminder.count}", channel=key[0], notices=(t,),
                                   form="reminder"))
        return out

    def next_due(self) -> float | None:
        return min((r.next_at for r in self.active.values()), default=None)
