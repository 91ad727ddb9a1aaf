"""Regenerate the README's dashboard screenshot (docs/img/dashboard-now.png):

    python -m tests.dashboard_screenshot [--out docs/img/dashboard-now.png]

Runs the same stack, seed and browser as the browser tests (tests/dashboard_helpers.py) on
topics of its own against the local broker, waits until the Now page shows the seeded spend and
the runaway's block, and saves the page.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import uuid
from pathlib import Path

from tests.dashboard_helpers import REPO, DashboardStack, chromium, screenshot, seed_day, wait_for
from tests.helpers import free_port
from tokenfuse.config import Settings
from tokenfuse.kafka.topics import create_topics, delete_topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "dashboard-now.png")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    folder = Path(tempfile.mkdtemp(prefix="dashboard-shot-"))
    settings = Settings(topic_prefix=f"shot-{tag}", app_id=f"shot-{tag}", partitions=2, data_dir=folder / "data",
                        control_key=secrets.token_hex(32), web_port=0, sink_port=free_port(), dashboard_port=0)
    create_topics(settings)
    try:
        with DashboardStack(settings, folder) as stack:
            seed_day(settings)
            with chromium() as driver:
                driver.get(stack.url)
                wait_for(driver, "#restricted tr[data-scope='agent:research-loop']")
                wait_for(driver, "#scopes tr[data-scope='team:acme/search'] .pct")
                wait_for(driver, "#other tr[data-scope='agent:research-loop'] .pct")
                wait_for(driver, "#alerts li")
                path, = screenshot(driver, args.out.stem, args.out.parent, full_page=False)
                print(f"saved {path}")
    finally:
        delete_topics(settings)


if __name__ == "__main__":
    main()
