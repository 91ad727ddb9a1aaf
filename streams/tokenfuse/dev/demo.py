"""`tokenfuse demo`: the whole pipeline on one machine, end to end, and cleaned up after.

Starts (or reuses) the local Kafka broker, the ClickHouse sink on embedded chDB, the worker and
the dashboard, applies a per-agent and a per-team budget, runs four simulated agents of which one
runs away, shows the runaway blocked by its own `check()` while the others go on, and ends with a
SQL report from ClickHouse. Then the stack stays up for a look at the dashboard until Ctrl-C
(`keep_up=False`, `tokenfuse demo --exit`: stop at once).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tokenfuse.budgets.store import publish
from tokenfuse.config import Settings
from tokenfuse.errors import BrokerUnavailable, BudgetExceeded, TokenfuseError
from tokenfuse.dev.process import RoleProcess
from tokenfuse.resources import resource_path
from tokenfuse.sdk.fuse import Fuse
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.kafka.topics import create_topics, delete_topics, ensure_broker

AGENTS = {"researcher": 400, "writer": 300, "reviewer": 200, "runaway-loop": 4000}  # tokens per call
LIMIT = 20_000  # tokens per agent per hour
TEAM_LIMIT_MICRO_USD = 100_000  # $0.10 per team per day: the dashboard shows it filling up
REPORT_SQL = ("SELECT agent, count() AS calls, sum(input_tokens + output_tokens) AS tokens, "
              "round(sum(cost_micro_usd) / 1e6, 4) AS usd FROM usage_events GROUP BY agent ORDER BY tokens DESC")


def say(text: str) -> None:
    print(text, flush=True)


def missing_prerequisites() -> list[str]:
    missing = []
    if shutil.which("java") is None:
        missing.append("Java 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    libs_cached = (Path(".tokenfuse/kafka/libs/.complete")).exists()
    if shutil.which("mvn") is None and not libs_cached:
        missing.append("Maven, to fetch the Kafka jars once (Debian: apt-get install maven)")
    return missing


class LocalBroker:
    """Use the broker at the settings' address if one answers; else start deploy/kafka's."""

    def __init__(self, settings: Settings):
        self.settings, self.started = settings, False

    def __enter__(self) -> "LocalBroker":
        try:
            ensure_broker(self.settings, timeout=3)
            say(f"· using the Kafka broker at {self.settings.bootstrap_servers}")
            return self
        except BrokerUnavailable:
            pass
        missing = missing_prerequisites()
        if missing:
            raise TokenfuseError("the local broker needs: " + "; ".join(missing))
        say("· starting a local Kafka broker (first run: Maven fetches the jars)...")
        self._script("start")
        self.started = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self._script("stop")

    def _script(self, action: str) -> None:
        result = subprocess.run([str(resource_path("kafka") / "kafka.sh"), action], capture_output=True, text=True)
        if result.returncode != 0:
            raise TokenfuseError(f"kafka.sh {action} failed:\n{result.stderr.strip()}")


def sql(settings: Settings, query: str) -> str:
    result = subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", "sql", query],
                            env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise TokenfuseError(f"tokenfuse sql failed: {result.stderr.strip()}")
    return result.stdout


def simulate(settings: Settings, tag: str) -> int:
    """Run the agents until the runaway is blocked, then a few rounds more; return calls recorded."""
    fuses = {name: Fuse(settings, FuseOptions(org="acme", team="research", agent=f"{name}-{tag}",
                                              provider="openai", spool_dir=settings.data_dir / "spool" / name))
             for name in AGENTS}
    recorded, blocked_at, rounds_after = 0, None, 0
    try:
        for fuse in fuses.values():
            fuse.kill_switch.wait_ready(30)
        deadline = time.monotonic() + 90
        while rounds_after < 5 and time.monotonic() < deadline:
            for name, tokens in AGENTS.items():
                fuse = fuses[name]
                try:
                    fuse.check(model="gpt-4o-mini")
                except BudgetExceeded as exc:
                    if blocked_at is None:
                        blocked_at = time.monotonic()
                        say(f"  ✋ {name}: check() raised BudgetExceeded — {exc}")
                    continue
                fuse.record("gpt-4o-mini", input_tokens=tokens * 3 // 4, output_tokens=tokens // 4)
                recorded += 1
            if blocked_at is not None:
                rounds_after += 1
                say(f"  · round {rounds_after} after the block: "
                    f"{', '.join(n for n in AGENTS if n != 'runaway-loop')} still working")
            time.sleep(0.2)
        if blocked_at is None:
            raise TokenfuseError("the runaway agent was not blocked within 90 s (see the worker log)")
    finally:
        for fuse in fuses.values():
            fuse.close()
    return recorded


def dashboard_port(preferred: int) -> int:
    """The configured dashboard port when free (a stable URL), else 0: any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return 0


def demo_budgets(now_ms: int) -> list[dict]:
    agent = {"id": "per-agent-hourly", "scope": "agent:*", "metric": "total_tokens", "window": "1h",
             "timezone": "UTC", "limit": LIMIT, "description": "demo",
             "thresholds": [{"percent": 50, "action": "alert"}, {"percent": 100, "action": "block"}],
             "updated_at": now_ms}
    team = {"id": "per-team-daily", "scope": "team:*", "metric": "cost_micro_usd", "window": "day",
            "timezone": "UTC", "limit": TEAM_LIMIT_MICRO_USD, "description": "demo",
            "thresholds": [{"percent": 80, "action": "alert"}], "updated_at": now_ms}
    return [agent, team]


def wait_for_interrupt() -> None:
    """Until Ctrl-C (or SIGTERM): the demo's stack stays up meanwhile."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("\nstopping...")


def run_demo(keep_up: bool = True) -> int:
    tag = uuid.uuid4().hex[:6]
    data_dir = Path(".tokenfuse") / f"demo-{tag}"
    settings = Settings.from_env(topic_prefix=f"demo-{tag}", app_id=f"demo-{tag}", data_dir=data_dir,
                                 control_key=secrets.token_hex(32), budget_keys=f"demo:{secrets.token_hex(32)}",
                                 partitions=2, web_port=0)
    settings = settings.model_copy(update={"dashboard_port": dashboard_port(settings.dashboard_port)})
    say(f"tokenfuse demo — state in {data_dir}")
    with LocalBroker(settings):
        create_topics(settings)
        try:
            publish(settings, demo_budgets(int(time.time() * 1000)), [])
            say(f"· budgets: every agent may use {LIMIT:,} tokens per hour (alert at 50%, block at 100%); "
                f"every team ${TEAM_LIMIT_MICRO_USD / 1e6:.2f} per day (alert at 80%)")
            say("· starting the ClickHouse sink (embedded chDB), the worker and the dashboard...")
            with RoleProcess("sink", settings, data_dir / "sink.log"), \
                    RoleProcess("worker", settings, data_dir / "worker.log"), \
                    RoleProcess("dashboard", settings, data_dir / "dashboard.log") as dashboard:
                url = dashboard.ready_message.split(" on ", 1)[1].strip()
                say(f"· dashboard: {url}  (live: open it now to watch)")
                say(f"· four agents at work: {', '.join(AGENTS)}")
                calls = simulate(settings, tag)
                say(f"· {calls} calls recorded; waiting for ClickHouse to hold them all...")
                deadline = time.monotonic() + 60
                while int(sql(settings, "SELECT count() FROM usage_events").strip().splitlines()[-1]) < calls:
                    if time.monotonic() > deadline:
                        raise TokenfuseError("the sink did not store every event within 60 s")
                    time.sleep(0.5)
                say("\nSpend per agent (ClickHouse):\n" + sql(settings, REPORT_SQL))
                say("demo done: the runaway was blocked by its own runtime, the others went on.")
                if keep_up:
                    say(f"\nThe stack stays up: look at {url} (Now: the block and the budgets; click a scope "
                        "for its chart). Ctrl-C stops it.")
                    wait_for_interrupt()
        finally:
            delete_topics(settings)
    return 0
