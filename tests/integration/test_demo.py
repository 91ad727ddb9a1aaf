"""`tokenfuse demo --exit` (what `make demo` runs, without staying up): the whole demo against the
local broker, the dashboard's URL printed, everything stopped and its topics deleted after."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import free_port
from tokenfuse.config import Settings
from tokenfuse.kafka.topics import admin_client


def test_the_demo_runs_end_to_end_prints_the_dashboard_url_and_exits(broker, tmp_path):
    env = {**os.environ, "TOKENFUSE_BOOTSTRAP_SERVERS": broker, "TOKENFUSE_DASHBOARD_PORT": "0",
           "TOKENFUSE_SINK_PORT": str(free_port())}
    result = subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", "demo", "--exit"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "· dashboard: http://127.0.0.1:" in result.stdout
    assert "check() raised BudgetExceeded" in result.stdout
    assert "demo done" in result.stdout and "stays up" not in result.stdout
    tag = result.stdout.split("state in .tokenfuse/demo-", 1)[1].split()[0]
    topics = admin_client(Settings(bootstrap_servers=broker)).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith(f"demo-{tag}")]
