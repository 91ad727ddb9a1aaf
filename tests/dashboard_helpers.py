"""The dashboard in a real browser: Debian's chromium driven by Selenium through chromium-driver,
the whole stack (sink, worker, dashboard) as real processes, and a seeded picture of a day.

Used by tests/integration/test_dashboard_browser.py and by `python -m tests.dashboard_screenshot`
(the README's screenshot), so the picture in the README is what the tests look at.
"""

from __future__ import annotations

import random
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import UsageProducer, publish_budget, usage_event
from tokenfuse.config import Settings
from tokenfuse.dev.process import RoleProcess

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / ".tokenfuse" / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Known to work headless here: no sandbox (root), no GPU, nothing that phones home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000", "--force-device-scale-factor=1"]


@contextmanager
def chromium(profile_dir: Path | None = None) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile, driven by the system's chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir or tempfile.mkdtemp(prefix='chromium-')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class DashboardStack:
    """Sink, worker and dashboard as child processes on `settings` (topics must exist)."""

    settings: Settings
    logs: Path
    roles: list[RoleProcess] = field(default_factory=list)

    def __enter__(self) -> "DashboardStack":
        try:
            for role in ("sink", "worker", "dashboard"):
                self.roles.append(RoleProcess(role, self.settings, self.logs / f"{role}.log").start(timeout=120))
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def url(self) -> str:
        return self.roles[-1].ready_message.split(" on ", 1)[1].strip()

    def __exit__(self, *exc: object) -> None:
        for role in reversed(self.roles):
            role.stop()


def seed_day(settings: Settings, seed: int = 7) -> dict[str, int]:
    """A plausible picture: team and agent budgets, three teams of agents working through the
    last hour, and one runaway agent that crosses its hourly token budget. Returns the cost sent
    per team (micro-USD)."""
    publish_budget(settings, id="team-daily-usd", scope="team:acme/*", metric="cost_micro_usd", window="day",
                   limit=1_000_000, thresholds=[{"percent": 80, "action": "alert"}, {"percent": 100, "action": "block"}])
    publish_budget(settings, id="org-monthly-usd", scope="org:acme", metric="cost_micro_usd", window="month",
                   limit=50_000_000, thresholds=[{"percent": 90, "action": "alert"}])
    publish_budget(settings, id="agent-hourly-tokens", scope="agent:*", metric="total_tokens", window="1h",
                   limit=150_000, thresholds=[{"percent": 50, "action": "alert"}, {"percent": 100, "action": "block"}])
    rng, now = random.Random(seed), int(time.time() * 1000)
    producer = UsageProducer(settings)
    weights = {"search": 3.0, "ads": 1.4, "infra": 0.6}
    cost = {"search": 0, "ads": 0, "infra": 0, "research": 320_000}
    for i in range(600):
        team = ("search", "ads", "infra")[i % 3]
        agent = f"{team}-agent-{rng.randrange(4)}"
        tokens = int(rng.randrange(200, 1200) * weights[team])
        when = now - int(3_300_000 * (1 - (i / 600) ** 0.7)) - rng.randrange(20_000)
        producer.send(usage_event(agent, tokens, team=team, when_ms=min(when, now - 1000), run=f"run-{i % 23}",
                                  cost_micro_usd=tokens * 2))
        cost[team] += tokens * 2
    producer.send(usage_event("research-loop", 160_000, team="research", run="run-loop", cost_micro_usd=320_000))
    producer.flush()
    return cost


@dataclass(frozen=True)
class Shown:
    """What an element showed when it was found (pages re-render on every update, so elements
    themselves go stale: text and attributes are read in one step)."""

    text: str
    attrs: dict[str, str]


_FIND = """const [css, text] = arguments;
const e = [...document.querySelectorAll(css)].find((e) => text === null || e.textContent.includes(text));
return e ? {text: e.textContent, attrs: Object.fromEntries([...e.attributes].map((a) => [a.name, a.value]))} : null;"""


def wait_for(driver: webdriver.Chrome, css: str, timeout: float = 30.0, text: str | None = None) -> Shown:
    """The first element matching `css` (and containing `text`), once the page shows it."""
    found = WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(_FIND, css, text),
        f"no {css!r}{f' containing {text!r}' if text else ''} within {timeout:g}s")
    return Shown(found["text"], found["attrs"])


def screenshot(driver: webdriver.Chrome, name: str, *folders: Path, full_page: bool = True) -> list[Path]:
    """Save the page as `name`.png in each folder (test artifacts; the README's image): the whole
    page from its top, or with full_page=False the window's first screen."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    driver.execute_script("window.scrollTo(0, 0);")
    if full_page:
        driver.set_window_size(width, max(height, driver.execute_script("return document.body.scrollHeight;") + 140))
    paths = []
    try:
        for folder in folders or (ARTIFACTS,):
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}.png"
            assert driver.save_screenshot(str(path)), f"could not save {path}"
            paths.append(path)
    finally:
        driver.set_window_size(width, height)
    return paths
