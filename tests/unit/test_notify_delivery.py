"""The outbox, offsets, routing, digests and reminders, on a fake clock with senders that
record what they were given (pure logic: the HTTP side is tested against a real receiver in
tests/integration/test_notify.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenfuse.notify.channels import DeliveryFailed
from tokenfuse.notify.config import ChannelConfig, DeliveryPolicy, Route
from tokenfuse.notify.delivery import Outbox
from tokenfuse.notify.messages import Message, slack_payload, summary
from tokenfuse.notify.offsets import OffsetTracker
from tokenfuse.notify.schedule import Digests, Reminders, targets
from tokenfuse.notify.transitions import Source, Transition
from tokenfuse.observability.metrics import NotifierMetrics


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Receiver:
    """A sender whose receiver fails while `failing` says so."""

    name: str
    failing: int = 0  # attempts still to fail
    permanent: bool = False
    got: list[str] = field(default_factory=list)

    def send(self, msg: Message) -> None:
        if self.permanent:
            raise DeliveryFailed(self.name, "HTTP 400 Bad Request", retryable=False)
        if self.failing:
            self.failing -= 1
            raise DeliveryFailed(self.name, "cannot reach the receiver")
        self.got.append(msg.id)


@dataclass
class Outcomes:
    delivered_ids: list[str] = field(default_factory=list)
    dead: list[tuple[str, str, int]] = field(default_factory=list)

    def delivered(self, msg: Message) -> None:
        self.delivered_ids.append(msg.id)

    def dead_lettered(self, msg: Message, reason: str, attempts: int) -> None:
        self.dead.append((msg.id, reason, attempts))


def transition(n: int, event="fired", scope="agent:x", kind="threshold", severity="critical", **extra):
    return Transition(id=f"{event}:{n}", event=event, kind=kind, scope=scope, severity=severity,
                      occurred_at=1_800_000_000_000, source=Source("alerts", 0, n), **extra)


def outbox(receiver, policy=DeliveryPolicy(retries=3, backoff_ms=1000, max_backoff_ms=3000, disable_after=2),
           rate=600, burst=100):
    clock, outcomes, metrics = Clock(), Outcomes(), NotifierMetrics.create()
    config = {receiver.name: ChannelConfig(name=receiver.name, type="webhook", rate_per_minute=rate, burst=burst)}
    return Outbox({receiver.name: receiver}, config, policy, outcomes, metrics, clock), clock, outcomes, metrics


def message(n, channel="hook"):
    t = transition(n)
    return Message(id=t.id, channel=channel, notices=(t,), sources=(t.source,))


def metric(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_a_failing_receiver_gets_retries_with_doubling_backoff_then_the_message():
    receiver = Receiver("hook", failing=3)
    box, clock, outcomes, metrics = outbox(receiver)
    box.add(message(1))
    box.add(message(2))
    waits = []
    while box.pending():
        box.run_due()
        if box.pending():
            waits.append(box.next_due() - clock.now)
            clock.now = box.next_due()
    assert waits == [1.0, 2.0, 3.0]  # capped at max_backoff
    assert receiver.got == ["fired:1", "fired:2"] and outcomes.delivered_ids == ["fired:1", "fired:2"]
    assert metric(metrics, "tokenfuse_notify_failures_total", channel="hook") == 3
    assert metric(metrics, "tokenfuse_notify_deliveries_total", channel="hook") == 2


def test_after_the_last_retry_the_message_is_dead_lettered_and_the_next_one_goes():
    receiver = Receiver("hook", failing=4)
    box, clock, outcomes, _ = outbox(receiver)
    box.add(message(1))
    box.add(message(2))
    while box.pending():
        box.run_due()
        clock.now = box.next_due() or clock.now
    assert outcomes.dead == [("fired:1", "cannot reach the receiver", 4)]
    assert receiver.got == ["fired:2"]


def test_a_permanent_error_is_not_retried_and_repeated_ones_disable_the_channel():
    receiver = Receiver("hook", permanent=True)
    box, clock, outcomes, metrics = outbox(receiver)
    for n in range(4):
        box.add(message(n))
    box.run_due()
    assert [(i, a) for i, _, a in outcomes.dead] == [("fired:0", 1), ("fired:1", 1), ("fired:2", 0), ("fired:3", 0)]
    assert outcomes.dead[2][1] == "channel disabled after repeated failed deliveries"
    assert box.disabled() == ["hook"]
    assert metric(metrics, "tokenfuse_notify_channel_disabled", channel="hook") == 1
    assert metric(metrics, "tokenfuse_notify_dead_letters_total", channel="hook") == 4


def test_the_rate_limit_delays_a_flood_and_drops_nothing():
    receiver = Receiver("hook")
    box, clock, _, _ = outbox(receiver, rate=60, burst=3)
    for n in range(5):
        box.add(message(n))
    box.run_due()
    assert len(receiver.got) == 3 and box.next_due() == clock.now + 1.0
    clock.now += 1.0
    box.run_due()
    assert len(receiver.got) == 4
    clock.now += 1.0
    box.run_due()
    assert receiver.got == [f"fired:{n}" for n in range(5)]


def test_offsets_commit_up_to_the_first_record_whose_deliveries_are_not_all_done():
    offsets = OffsetTracker()
    a, b, c = (Source("alerts", 0, n) for n in (10, 11, 12))
    offsets.read(a, 2)
    offsets.read(b, 0)
    offsets.read(c, 1)
    offsets.done(c)
    assert offsets.to_commit({("alerts", 0): 13}) == {}
    offsets.done(a)
    assert offsets.to_commit({("alerts", 0): 13}) == {}
    offsets.done(a)
    assert offsets.to_commit({("alerts", 0): 13}) == {("alerts", 0): 13}
    assert offsets.to_commit({("alerts", 0): 13}) == {}  # only what moved


def test_an_idle_partition_commits_the_consumer_position_past_transaction_markers():
    offsets = OffsetTracker()
    offsets.read(Source("control", 1, 5), 1)
    assert offsets.to_commit({("control", 1): 7, ("control", 0): 3}) == {("control", 0): 3}
    offsets.done(Source("control", 1, 5))
    assert offsets.to_commit({("control", 1): 7, ("control", 0): 3}) == {("control", 1): 7}


def test_routes_match_scope_patterns_kinds_events_and_severity_and_a_channel_hears_once():
    routes = (Route(channels=("ops",), scopes=("team:acme/*",), min_severity="warning"),
              Route(channels=("ops", "mail"), kinds=("forecast",), digest_ms=60_000),
              Route(channels=("pager",), events=("blocked",)))
    assert targets(routes, transition(1, scope="team:acme/search")) == {"ops": routes[0]}
    assert targets(routes, transition(2, scope="team:acme/search", severity="info")) == {}
    forecast = transition(3, scope="team:acme/search", kind="forecast", severity="warning")
    assert targets(routes, forecast) == {"ops": routes[0], "mail": routes[1]}
    assert targets(routes, transition(4, event="blocked", scope="agent:x")) == {"pager": routes[2]}


def test_a_digest_batches_a_noisy_scope_into_one_message_per_interval():
    digests = Digests()
    for n in range(30):
        digests.add("mail", 60_000, transition(n), now=100.0 + n)
    assert digests.due(159.0) == []
    [msg] = digests.due(160.0)
    assert (msg.form, len(msg.notices), len(msg.sources)) == ("digest", 30, 30)
    assert msg.id.startswith("digest:") and digests.due(1000.0) == []
    text = slack_payload(msg, None)["blocks"][1]["text"]["text"]
    assert text.count("\n") == 20 and text.endswith("… and 10 more")


def test_reminders_repeat_while_a_block_lasts_and_stop_at_its_release():
    reminders, route = Reminders(), Route(channels=("ops",), renotify_ms=600_000)
    blocked = transition(1, event="blocked", until=1_800_000_000_000 + 3_600_000)
    reminders.track("ops", route, blocked, now=0.0)
    assert reminders.due(599.0, 1_800_000_000_000) == []
    [first] = reminders.due(600.0, 1_800_000_000_000)
    assert (first.id, first.form, first.sources) == ("blocked:1#reminder-1", "reminder", ())
    reminders.track("ops", route, transition(2, event="released"), now=700.0)
    assert reminders.due(5000.0, 1_800_000_000_000) == []


def test_reminders_end_when_the_window_ends_by_itself():
    reminders = Reminders()
    reminders.track("ops", Route(channels=("ops",), renotify_ms=1000), transition(1, window_end=5_000), now=0.0)
    assert reminders.due(10.0, 5_000) == [] and reminders.active == {}


def test_a_summary_reads_like_a_sentence():
    t = transition(1, event="blocked", budget_id="b1", metric="cost_micro_usd", spent=12_300_000,
                   limit=10_000_000, until=1_800_000_060_000)
    assert summary(t) == ("Blocked agent:x: $12.30 of $10.00 (123%), budget b1, until 2027-01-15 08:01:00 UTC")
