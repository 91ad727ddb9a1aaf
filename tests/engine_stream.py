"""A generated usage stream with its ground truth, for the budget engine's exactness tests.

The stream has many orgs/teams/agents/runs/models/users/tags, out-of-order events within the
grace period, late events beyond it and duplicates (resent event_ids, some much later in the
stream). Each event goes to an explicit usage partition (by agent), so the ground truth can apply
the worker's lateness rule exactly: an event is late when its time is more than the grace period
behind the newest event time seen before it on its partition. The ground truth is plain Python
over the generated list and shares no code with the worker.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.parse
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.helpers import free_port, read_all
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import CompactedTopicFollower, wait_until
from tokenfuse.config import Settings
from tokenfuse.config.token_file import TokenFileError
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.usage.windows import WindowSpec, parse_window
from tokenfuse.worker.web import worker_get

FIELDS = ("input_tokens", "output_tokens", "cached_tokens", "cost_micro_usd", "events")
# The windows whose bounds hold the whole generated stream (rolling ones depend on the clock).
DAY = parse_window("day")  # the window of the generated budgets
CHECKED_WINDOWS = ("3600s", "86400s", "604800s", "day@UTC", "month@UTC")


@dataclass
class Stream:
    """`sent` is the send order: (usage partition, event). `counted` are the events the worker
    must count; `late` and `duplicates` how many it must not."""

    sent: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    counted: list[dict[str, Any]] = field(default_factory=list)
    late: int = 0
    duplicates: int = 0


def scopes_of(event: dict[str, Any]) -> list[str]:
    """The scope keys of an event, written out from DESIGN.md (not imported from the worker)."""
    keys = ["global", f"org:{event['org']}", f"team:{event['org']}/{event['team']}",
            f"agent:{event['agent']}", f"model:{event['model']}"]
    if event["run"]:
        keys.append(f"run:{event['run']}")
    if event["user"]:
        keys.append(f"user:{event['user']}")
    keys += [f"tag:{k}={v}" for k, v in event["tags"].items()]
    return keys


def event_window_span(now_ms: int) -> tuple[int, int]:
    """Event times for a stream generated now: the current hour up to a few seconds ago (at
    least the last 3 minutes, which near the top of the hour reach into the previous one)."""
    end = now_ms - 2_000
    return min(now_ms - now_ms % 3_600_000, end - 180_000), end


def generate(n: int, partitions: int, grace_ms: int, *, seed: int, now_ms: int | None = None,
             agents: int = 400, dup_rate: float = 0.03, late_rate: float = 0.01) -> Stream:
    """`n` sends (duplicates included) with event times rising through the span, each jittered
    back by less than the grace period; late events lie 4..20 grace periods back."""
    rng = random.Random(seed)
    start, end = event_window_span(now_ms or int(time.time() * 1000))
    orgs = [f"o{i}" for i in range(6)]
    models = [f"m{i}" for i in range(7)]
    agent_home = {f"a{i}": (orgs[i % len(orgs)], f"t{i % 5}") for i in range(agents)}
    names = list(agent_home)
    out = Stream()
    first_sends: list[tuple[int, dict[str, Any]]] = []
    for i in range(n):
        if first_sends and rng.random() < dup_rate:
            # A resend: mostly recent (producer retry), sometimes from far back (spool replay).
            back = rng.randrange(len(first_sends)) if rng.random() < 0.3 else rng.randrange(min(50, len(first_sends)))
            out.sent.append(first_sends[-1 - back])
            continue
        base = start + (end - start) * i // n
        if rng.random() < late_rate:
            when = base - rng.randint(4 * grace_ms, 20 * grace_ms)
        else:
            when = base - rng.randint(0, grace_ms * 3 // 5)
        agent = rng.choice(names)
        org, team = agent_home[agent]
        inp = rng.randint(1, 5_000)
        event = {
            "event_id": f"e{seed}-{i}", "event_time": max(when, 1), "org": org, "team": team, "agent": agent,
            "run": f"r-{agent}-{rng.randrange(5)}" if rng.random() < 0.9 else None,
            "user": f"u{rng.randrange(60)}" if rng.random() < 0.5 else None,
            "model": rng.choice(models), "provider": "openai",
            "input_tokens": inp, "output_tokens": rng.randint(0, 2_000), "cached_tokens": rng.randint(0, inp // 2),
            "cost_micro_usd": rng.randint(0, 20_000),
            "tags": {"env": rng.choice(("prod", "dev"))} if rng.random() < 0.7 else {},
        }
        sent = (partition_of(agent, partitions), event)
        first_sends.append(sent)
        out.sent.append(sent)
    apply_ground_truth(out, grace_ms)
    return out


def partition_of(agent: str, partitions: int) -> int:
    return zlib.crc32(agent.encode()) % partitions


def apply_ground_truth(stream: Stream, grace_ms: int) -> None:
    """Fill counted/late/duplicates by replaying the sends in order, per partition."""
    seen: set[str] = set()
    newest: dict[int, int] = defaultdict(int)
    for partition, event in stream.sent:
        if event["event_id"] in seen:
            stream.duplicates += 1
            continue
        seen.add(event["event_id"])
        newest[partition] = max(newest[partition], event["event_time"])
        if event["event_time"] < newest[partition] - grace_ms:
            stream.late += 1
        else:
            stream.counted.append(event)


class TotalsIndex:
    """Ground truth per scope and event second, so checking hundreds of scopes × windows is fast."""

    def __init__(self, counted: list[dict[str, Any]]):
        self.by_scope: dict[str, dict[int, list[int]]] = defaultdict(dict)
        catalog = PriceCatalog.load()
        for event in counted:
            # What counts is the larger of the reported and the catalog cost (usage/pricing.py).
            values = {**event, "cost_micro_usd": catalog.cost(event).micro_usd}
            for scope in scopes_of(event):
                vec = self.by_scope[scope].setdefault(event["event_time"], [0] * len(FIELDS))
                for i, name in enumerate(FIELDS[:-1]):
                    vec[i] += values[name]
                vec[-1] += 1

    def scopes(self) -> list[str]:
        return sorted(self.by_scope)

    def totals(self, scope: str, start: int, end: int) -> dict[str, int]:
        out = [0] * len(FIELDS)
        for ts, vec in self.by_scope.get(scope, {}).items():
            if start <= ts < end:
                out = [a + b for a, b in zip(out, vec)]
        return dict(zip(FIELDS, out))

    def per_window(self, scope: str, spec: WindowSpec, metric: str) -> dict[int, int]:
        """window start -> spend of `metric` (total_tokens = input + output) in that window."""
        out: dict[int, int] = defaultdict(int)
        for ts, vec in self.by_scope.get(scope, {}).items():
            v = dict(zip(FIELDS, vec))
            out[spec.bounds(ts)[0]] += v["input_tokens"] + v["output_tokens"] if metric == "total_tokens" else v[metric]
        return dict(out)


def sample_scopes(index: TotalsIndex, seed: int, per_kind: int = 200) -> list[str]:
    """Every global/org/team/model/user/tag scope and `per_kind` agents and runs."""
    rng = random.Random(seed)
    kinds: dict[str, list[str]] = defaultdict(list)
    for scope in index.scopes():
        kinds[scope.partition(":")[0]].append(scope)
    out = []
    for kind, scopes in sorted(kinds.items()):
        out += rng.sample(scopes, per_kind) if kind in ("agent", "run") and len(scopes) > per_kind else scopes
    return out


class StreamProducer:
    """Sends a stream's events to their explicit usage partitions, in order (idempotent)."""

    def __init__(self, settings: Settings):
        self.topic = settings.topic("usage")
        self.producer = Producer({**settings.kafka_config, "enable.idempotence": True, "linger.ms": 5,
                                  "compression.type": "zstd", "queue.buffering.max.messages": 500_000})
        self.encode = codec("UsageEvent").encode

    def send(self, sends: list[tuple[int, dict[str, Any]]]) -> None:
        for partition, event in sends:
            while True:
                try:
                    self.producer.produce(self.topic, key=event["agent"].encode(), value=self.encode(event),
                                          partition=partition, timestamp=event["event_time"])
                    break
                except BufferError:
                    self.producer.poll(0.05)
        assert self.producer.flush(60) == 0, "usage not delivered"


def get_json(settings: Settings, path: str) -> tuple[int, Any]:
    """(status, JSON body) of a page of the worker run with `settings`, with its token; status 0
    when it does not answer (or has not written its token yet)."""
    try:
        return worker_get(settings, path)
    except (urllib.error.URLError, ConnectionError, TimeoutError, TokenFileError):
        return 0, None


def counters(settings: Settings) -> dict[str, int]:
    """The worker's /stats counters (empty while it does not answer)."""
    return (get_json(settings, "/stats")[1] or {}).get("counters", {})


def worker_totals(workers: list[Settings], scope: str) -> dict[str, Any] | None:
    """The windows of `scope` from whichever worker owns it; None if none answers for it."""
    for settings in workers:
        status, body = get_json(settings, "/totals?" + urllib.parse.urlencode({"scope": scope}))
        if status == 200:
            return body["windows"]
    return None


def totals_mismatches(workers: list[Settings], index: TotalsIndex, scopes: list[str],
                      windows: tuple[str, ...] = CHECKED_WINDOWS, limit: int = 10) -> list[str]:
    """What differs between the workers' totals and the ground truth (at most `limit` lines)."""
    problems = []
    for scope in scopes:
        got = worker_totals(workers, scope)
        if got is None:
            problems.append(f"{scope}: no worker answers for it")
        else:
            for name in windows:
                w = got[name]
                want = index.totals(scope, w["start"], w["end"])
                have = {k: w[k] for k in FIELDS}
                if have != want:
                    problems.append(f"{scope} {name} [{w['start']}, {w['end']}): worker {have} != truth {want}")
        if len(problems) >= limit:
            break
    return problems


def committed_everything(settings: Settings, partitions: int) -> bool:
    """Has the worker group committed the usage topic up to its end on every partition?"""
    consumer = Consumer({**settings.kafka_config, "group.id": settings.app_id, "enable.auto.commit": False})
    try:
        topic = settings.topic("usage")
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        committed = consumer.committed(parts, timeout=10)
        for tp in committed:
            high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            if high > 0 and tp.offset < high:  # an empty partition has nothing to commit
                return False
        return True
    finally:
        consumer.close()



THRESHOLDS = [{"percent": 50, "action": "alert"}, {"percent": 80, "action": "throttle"},
              {"percent": 100, "action": "block"}]
SEVERITY = {"allow": 0, "alert": 0, "throttle": 2, "block": 3}


def budgets_for(index: TotalsIndex, spec: WindowSpec) -> list[dict[str, Any]]:
    """Budgets (window `day`) whose limits are placed from the ground truth, so that known scopes
    cross known thresholds: org o0 passes 100 %, team o1/t1 about 90 %, model m2 and global stay
    under 50 %; each agent and each run has its own budget (`*`) that some of them pass."""
    def top(scope: str, metric: str) -> int:
        return max(index.per_window(scope, spec, metric).values())

    def quantile(kind: str, metric: str, q: float) -> int:
        spends = sorted(top(s, metric) for s in index.scopes() if s.startswith(kind + ":"))
        return spends[int(len(spends) * q)]

    def budget(id: str, scope: str, metric: str, limit: int) -> dict[str, Any]:
        return {"id": id, "scope": scope, "metric": metric, "window": "day", "limit": max(limit, 1),
                "thresholds": THRESHOLDS}

    return [
        budget("org-over", "org:o0", "cost_micro_usd", top("org:o0", "cost_micro_usd") * 95 // 100),
        budget("team-near", "team:o1/t1", "cost_micro_usd", top("team:o1/t1", "cost_micro_usd") * 100 // 90),
        budget("model-low", "model:m2", "total_tokens", top("model:m2", "total_tokens") * 10),
        budget("global-low", "global", "cost_micro_usd", top("global", "cost_micro_usd") * 3),
        budget("per-agent", "agent:*", "total_tokens", quantile("agent", "total_tokens", 0.7)),
        budget("per-run", "run:*", "cost_micro_usd", quantile("run", "cost_micro_usd", 0.9)),
    ]


def expected_outcome(index: TotalsIndex, budgets: list[dict[str, Any]], spec: WindowSpec,
                     now_ms: int) -> tuple[set[str], dict[str, tuple[str, int]]]:
    """(alert ids that must fire, once each; scope -> (control state, until) for every scope
    whose current window is at throttle or block). Scopes under 80 % publish no control state."""
    alerts: set[str] = set()
    control: dict[str, tuple[str, int]] = {}
    current_start, current_end = spec.bounds(now_ms)
    for b in budgets:
        pattern = b["scope"]
        scopes = [s for s in index.scopes() if (s.startswith(pattern[:-1]) if pattern.endswith("*") else s == pattern)]
        for scope in scopes:
            for start, spent in index.per_window(scope, spec, b["metric"]).items():
                hit = [t for t in b["thresholds"] if spent * 100 >= t["percent"] * b["limit"]]
                alerts.update(f"{b['id']}|{scope}|{start}|{t['percent']}" for t in hit)
                state = max((t["action"] for t in hit), key=SEVERITY.__getitem__, default="allow")
                if start == current_start and SEVERITY[state] > 0:
                    control[scope] = (state, current_end)
    return alerts, control


# A SIGKILLed worker leaves its member in the group until its session times out; a worker started
# in its place waits that long to join (measured: 6-9 s of a restart with the default 10 s). The
# broker's minimum (group.min.session.timeout.ms) keeps crash tests short.
CRASH_TEST_SESSION_TIMEOUT_S = 6.0


def worker_settings(settings: Settings, name: str) -> Settings:
    """One worker of the group: its own web port and local state directory, and the shortest
    session timeout (CRASH_TEST_SESSION_TIMEOUT_S)."""
    return settings.model_copy(update={"web_port": free_port(), "data_dir": settings.data_dir / name,
                                       "session_timeout_seconds": CRASH_TEST_SESSION_TIMEOUT_S})


def fresh_settings(settings: Settings, **update: Any) -> Settings:
    """Settings on a new uuid prefix and group (for a partition count other than the fixture's)."""
    tag = uuid.uuid4().hex[:10]
    return settings.model_copy(update={"topic_prefix": f"test-{tag}", "app_id": f"test-{tag}-worker", **update})


def check_alerts(settings: Settings, expected: set[str]) -> None:
    """Every expected alert id exactly once and nothing else (waits a little for extras)."""
    decode = codec("Alert").decode
    read_all(settings, "alerts", decode, until=lambda r: len(r) >= len(expected), timeout=30)
    alerts = read_all(settings, "alerts", decode, until=lambda r: len(r) > len(expected), timeout=3)
    counts = Counter(a["alert_id"] for _, a, _ in alerts)
    twice = sorted(i for i, n in counts.items() if n > 1)
    assert not twice, f"{len(twice)} thresholds fired more than once, e.g. {twice[:5]}"
    assert not expected - set(counts), f"missing alerts, e.g. {sorted(expected - set(counts))[:5]}"
    assert not set(counts) - expected, f"unexpected alerts, e.g. {sorted(set(counts) - expected)[:5]}"


def check_control(control: CompactedTopicFollower, expected: dict[str, tuple[str, int]]) -> None:
    def states() -> dict[str, tuple[str, int]]:
        return {s: (v["state"], v["until"]) for s, v in control.snapshot().items()}

    wait_until(lambda: states() == expected, timeout=20)
    got = states()
    wrong = sorted((s, got.get(s), expected.get(s)) for s in set(got) | set(expected) if got.get(s) != expected.get(s))
    assert not wrong, f"{len(wrong)} control states differ (scope, got, expected), e.g. {wrong[:5]}"
