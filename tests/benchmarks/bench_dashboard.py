"""The dashboard at scale, on demand:
    python -m tests.benchmarks.bench_dashboard [--rows 10000000] [--events 20]

In one run, against the local broker and a fresh embedded ClickHouse folder:
  1. loads `--rows` usage events over the last 30 days (generated inside ClickHouse, through the
     rollup views, like bench_history), then starts the real sink, worker and dashboard on it;
  2. page and API load times (median and max of 5, after a warm-up) for every page, against a
     baseline in the same run: a naive "spend per team today" straight from the raw events
     through the same SQL endpoint (what a dashboard without rollups does);
  3. the time from a usage event to the change on an open page: `--events` events, each
     crossing an agent's budget, sent while one SSE stream of the Now page is open; measured
     until the block shows in the stream (live part, from the control topic) and until the
     spend shows (spend part, from the rollups), against the time the same block takes to reach
     a plain follower of the control topic (what a runtime's kill switch sees).
Goals: every page <= 1 s at 10M rows; a change on the page <= 2 s p95.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import secrets
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.bench_history import AGENTS, TEAMS, bulk_load, generate
from tests.helpers import UsageProducer, free_port, publish_budget, usage_event
from tokenfuse.config import Settings
from tokenfuse.control.signing import decode_verified
from tokenfuse.dev.process import RoleProcess
from tokenfuse.history.client import History
from tokenfuse.history.migrate import migrate
from tokenfuse.kafka.follow import CompactedTopicFollower, wait_until
from tokenfuse.kafka.topics import create_topics, delete_topics

AGENT_LIMIT = 20_000_000  # tokens per agent per hour: the generated agents stay well below (~1.5M)
PAGES = {
    "Now page (HTML)": "/",
    "Now API (budgets, org/team today)": "/api/now",
    "Scope team, budget window": "/api/scope?key=team:acme/team-3",
    "Scope agent, 24h": "/api/scope?key=agent:agent-7&range=24h",
    "Scope org, 30d (agents from agents_by_hour)": "/api/scope?key=org:acme&range=30d",
    "Scope team, 30d (runs from raw events)": "/api/scope?key=team:acme/team-3&range=30d",
    "Top agents 30d": "/api/top?kind=agent&range=30d",
    "Top teams 24h": "/api/top?kind=team&range=24h",
    "History team:* 30d": "/api/history?scope=team:*&range=30d",
    "History global 1h": "/api/history?scope=global&range=1h",
}
BASELINE_SQL = ("SELECT team, sum(cost_micro_usd) AS c FROM usage_events WHERE event_time >= toStartOfDay(now()) "
                "GROUP BY team ORDER BY c DESC")


def load(folder: str, rows: int) -> None:
    """In a process of its own: chDB allows one engine per process, and the sink needs it after."""
    history = History(Settings(data_dir=Path(folder)))
    migrate(history)
    now_ms = int(time.time() * 1000)
    generate(history, "usage_events", min(rows, 1_000_000), now_ms, 600_000)  # the last 10 minutes
    bulk_load(history, max(rows - 1_000_000, 0), now_ms)
    history.command("OPTIMIZE TABLE usage_by_hour FINAL")  # as background merges would have by now
    print(f"  stored {history.select('SELECT count() FROM usage_events').rows[0][0]:,} events", flush=True)
    history.close()


def timed_get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        assert response.status == 200
    return (time.perf_counter() - start) * 1000


def baseline_ms(settings: Settings) -> float:
    request = urllib.request.Request(f"http://127.0.0.1:{settings.sink_port}/sql", method="POST",
                                     data=json.dumps({"query": BASELINE_SQL}).encode(),
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return (time.perf_counter() - start) * 1000


def median_max(fn, repeat: int = 5) -> tuple[float, float]:
    fn()
    times = [fn() for _ in range(repeat)]
    return statistics.median(times), max(times)


@dataclass
class StreamWatch:
    """Reads one SSE stream of the Now page; notes when each agent's block and spend first show."""

    url: str
    blocked: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        host, port = self.url.split("//")[1].strip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("GET", "/events/now")
        response = connection.getresponse()
        event = None
        while True:
            line = response.readline().decode().strip()
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("live", "spend"):
                self._note(event, json.loads(line.split(":", 1)[1]), time.monotonic())

    def _note(self, event: str, data: dict, at: float) -> None:
        if event == "live":
            for state in data.get("restricted", []):
                self.blocked.setdefault(state["scope"], at)
        else:
            for use in data.get("other", []):
                if use["spent"] > 0:
                    self.spent.setdefault(use["scope"], at)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--events", type=int, default=20, help="budget-crossing events timed to the page")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    print(f"loading {args.rows:,} usage events ({AGENTS} agents, {TEAMS} teams, 30 days) into {folder}...", flush=True)
    started = time.perf_counter()
    loader = multiprocessing.get_context("spawn").Process(target=load, args=(str(folder), args.rows))
    loader.start()
    loader.join()
    assert loader.exitcode == 0, "loading failed"
    print(f"  loaded in {time.perf_counter() - started:.0f}s", flush=True)

    tag = uuid.uuid4().hex[:8]
    settings = Settings(topic_prefix=f"bench-{tag}", app_id=f"bench-{tag}", partitions=2, data_dir=folder,
                        control_key=secrets.token_hex(32), web_port=0, sink_port=free_port(), dashboard_port=0)
    create_topics(settings)
    try:
        publish_budget(settings, id="team-day", scope="team:*", metric="cost_micro_usd", window="day",
                       limit=50_000_000)
        publish_budget(settings, id="org-month", scope="org:acme", metric="cost_micro_usd", window="month",
                       limit=10_000_000_000)
        publish_budget(settings, id="agent-hour", scope="agent:*", metric="total_tokens", window="1h",
                       limit=AGENT_LIMIT, thresholds=[{"percent": 100, "action": "block"}])
        with RoleProcess("sink", settings, folder / "sink.log"), \
                RoleProcess("worker", settings, folder / "worker.log"), \
                RoleProcess("dashboard", settings, folder / "dashboard.log") as dashboard:
            url = dashboard.ready_message.split(" on ", 1)[1].strip().rstrip("/")
            page_times(settings, url)
            change_latency(settings, url, args.events)
    finally:
        delete_topics(settings)


def page_times(settings: Settings, url: str) -> None:
    base, base_max = median_max(lambda: baseline_ms(settings))
    print(f"\npage and API load times (median / max of 5), goal <= 1000 ms:")
    for name, path in PAGES.items():
        med, worst = median_max(lambda: timed_get(url + path))
        print(f"  {name:46s} {med:8.1f} / {worst:8.1f} ms   ratio to baseline {med / base:6.3f}", flush=True)
    print(f"  {'baseline: spend per team today, raw events':46s} {base:8.1f} / {base_max:8.1f} ms")


def change_latency(settings: Settings, url: str, events: int) -> None:
    keys = {settings.control_key_id: settings.control_key.get_secret_value().encode()}
    followed: dict[str, float] = {}  # the baseline: when a plain follower of the control topic sees it
    follower = CompactedTopicFollower(settings, settings.topic("control"), lambda b: decode_verified(b, keys),
                                      on_change=lambda key, _value: followed.setdefault(key, time.monotonic()))
    watch = StreamWatch(url)
    watch.start()
    assert follower.wait_caught_up(30)
    producer = UsageProducer(settings)
    sent: dict[str, float] = {}
    for i in range(events):
        scope = f"agent:latency-{i}"
        # Each crosses by more than the one before: the Now page lists a budget's 10 biggest values.
        producer.send(usage_event(scope.split(":")[1], AGENT_LIMIT + 1000 * (i + 1), team="latency"))
        producer.flush()
        sent[scope] = time.monotonic()
        wait_until(lambda: scope in watch.blocked and scope in watch.spent and scope in followed, 30, interval=0.01)
        time.sleep(0.5)  # events apart, so each is a change of its own
    follower.close()
    print(f"\nusage event -> change on the open Now page ({len(sent)} events), goal p95 <= 2 s:")
    for name, seen in (("block shown (live part, control topic)", watch.blocked),
                       ("spend shown (spend part, rollups)", watch.spent),
                       ("baseline: block seen by a control follower", followed)):
        values = [seen[k] - t for k, t in sent.items() if k in seen]
        missing = f"   ({len(sent) - len(values)} not within 30 s)" if len(values) < len(sent) else ""
        if values:
            print(f"  {name:44s} p50 {statistics.median(values) * 1000:6.0f} ms   "
                  f"p95 {percentile(values, 0.95) * 1000:6.0f} ms   max {max(values) * 1000:6.0f} ms{missing}")


if __name__ == "__main__":
    main()
