"""The dashboard against the real stack (broker, worker, sink on embedded ClickHouse, dashboard),
looked at in a real headless Chromium: what the pages show, live changes without a reload, the
operator's kill and release, and the requests it refuses. Screenshots of each page land in
.tokenfuse/artifacts/ and in the test's tmp folder."""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Producer
from selenium.webdriver.common.by import By

from tests.dashboard_helpers import ARTIFACTS, DashboardStack, chromium, screenshot, seed_day, wait_for
from tests.helpers import UsageProducer, unique_settings, usage_event
from tokenfuse.dashboard.security import token_path
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.topics import create_topics, delete_topics


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory):
    """One stack for the module (starting a worker costs seconds): operator mode on, a seeded day."""
    folder = tmp_path_factory.mktemp("dashboard")
    settings = unique_settings(broker, folder).model_copy(update={"dashboard_port": 0, "dashboard_operator": True})
    create_topics(settings)
    try:
        with DashboardStack(settings, folder) as running:
            yield running
    finally:
        if not os.environ.get("TOKENFUSE_TEST_KEEP_TOPICS"):
            delete_topics(settings)


@pytest.fixture(scope="module")
def seeded(stack) -> dict[str, int]:
    """The seeded day's cost per team (micro-USD)."""
    return seed_day(stack.settings)


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "profile") as driver:
        yield driver


def usd(micro: int) -> str:
    return f"${micro / 1e6:,.2f}"


def request(stack, path, *, method="GET", body=None, headers=None):
    """(status, JSON body) of a request to the dashboard; `headers` may override Host."""
    req = urllib.request.Request(stack.url.rstrip("/") + path, method=method, headers=headers or {},
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_now_page_shows_each_team_budget_with_its_spend(stack, seeded, browser, tmp_path):
    browser.get(stack.url)
    for team, micro in seeded.items():
        row = f"#scopes tr[data-scope='team:acme/{team}'][data-budget='team-daily-usd']"
        wait_for(browser, row, text=f"{usd(micro)} / $1.00")
        wait_for(browser, f"{row} .pct", text=f"{100 * micro / 1_000_000:.1f}%")
    screenshot(browser, "dashboard-now", ARTIFACTS, tmp_path)


def test_usage_crossing_a_limit_shows_the_block_on_the_open_page_without_a_reload(stack, seeded, browser, tmp_path):
    agent = f"crosser-{uuid.uuid4().hex[:6]}"
    browser.get(stack.url)
    wait_for(browser, "#restricted tr[data-scope='agent:research-loop']")  # the stream is live
    browser.execute_script("window.notReloaded = true;")
    assert not browser.find_elements(By.CSS_SELECTOR, f"#restricted tr[data-scope='agent:{agent}']")
    producer = UsageProducer(stack.settings)
    producer.send(usage_event(agent, 151_000, team="crossers"))  # agent-hourly-tokens: 150k per hour
    producer.flush()
    sent = time.monotonic()
    row = wait_for(browser, f"#restricted tr[data-scope='agent:{agent}']", timeout=20)
    seconds = time.monotonic() - sent
    assert row.attrs["data-state"] == "block"
    assert "agent-hourly-tokens" in row.text
    assert browser.execute_script("return window.notReloaded === true;")
    assert seconds < 5, f"the block took {seconds:.2f}s to reach the page"
    # Its spend follows from ClickHouse on the same stream.
    wait_for(browser, f"#other tr[data-scope='agent:{agent}'] .pct", timeout=20, text="100.7%")
    screenshot(browser, "dashboard-now-block", ARTIFACTS, tmp_path)


def test_scope_page_draws_the_spend_chart_with_its_limit_line(stack, seeded, browser, tmp_path):
    browser.get(stack.url + "scope?key=" + urllib.request.quote("team:acme/search", safe=""))
    series = wait_for(browser, "#chart svg path.series[data-series='team:acme/search']")
    assert series.attrs["d"].count("L") >= 2
    wait_for(browser, "#chart svg text.limit-label", text="limit (team-daily-usd): $1.00")
    wait_for(browser, "#budgets tr[data-budget='team-daily-usd']", text=f"{usd(seeded['search'])} / $1.00")
    wait_for(browser, "#agents tbody tr", text="agent:search-agent-")
    wait_for(browser, "#models tbody tr", text="gpt-4o-mini")
    screenshot(browser, "dashboard-scope", ARTIFACTS, tmp_path)
    browser.find_element(By.CSS_SELECTOR, "#range button[data-range='24h']").click()
    wait_for(browser, "#chart-caption", text="cost per hour")
    assert wait_for(browser, "#chart svg").attrs["data-points"] != "0"


def test_scope_chart_draws_the_live_breach_forecast_band_toward_the_limit(stack, seeded, browser, tmp_path):
    """The worker's forecast alert (published here as the worker publishes it) becomes the p10-p90
    wedge and the dashed p50 line on the budget window's chart."""
    now = int(time.time() * 1000)
    day = now - now % 86_400_000
    hours_left = (day + 86_400_000 - now) / 3_600_000
    etas = {f"eta_{q}": now + int(share * hours_left * 3_600_000) for q, share in (("p10", .3), ("p50", .5), ("p90", .8))}
    alert = {"alert_id": f"team-daily-usd|team:acme/ads|{day}|forecast|1", "kind": "forecast",
             "scope": "team:acme/ads", "budget_id": "team-daily-usd", "action": "alert", "metric": "cost_micro_usd",
             "limit": 1_000_000, "window_start": day, "window_end": day + 86_400_000, "created_at": now,
             "burn_rate_per_hour": 1000.0, **etas}
    producer = Producer(stack.settings.kafka_config)
    producer.produce(stack.settings.topic("alerts"), key=b"team:acme/ads", value=codec("Alert").encode(alert))
    assert producer.flush(30) == 0
    browser.get(stack.url + "scope?key=" + urllib.request.quote("team:acme/ads", safe=""))
    wedge = wait_for(browser, "#chart svg path.forecast-band")
    assert wedge.attrs["d"].count("L") == 2 and wedge.attrs["d"].endswith("Z")
    wait_for(browser, "#chart svg path.forecast-p50")
    wait_for(browser, "#chart svg text.forecast-label", text="forecast")
    screenshot(browser, "dashboard-scope-forecast", ARTIFACTS, tmp_path)


def test_top_spenders_and_history_pages_chart_the_rollups(stack, seeded, browser, tmp_path):
    browser.get(stack.url + "top")
    wait_for(browser, "#top tbody tr[data-scope='agent:research-loop']")
    assert int(wait_for(browser, "#chart svg").attrs["data-points"]) >= 5
    screenshot(browser, "dashboard-top", ARTIFACTS, tmp_path)
    browser.get(stack.url + "history?scope=team:*")
    for team in seeded:
        wait_for(browser, f"#chart svg path.series[data-series='team:acme/{team}']")
    screenshot(browser, "dashboard-history", ARTIFACTS, tmp_path)


def test_operator_kills_and_releases_a_scope_from_its_page(stack, browser, tmp_path):
    scope = f"agent:victim-{uuid.uuid4().hex[:6]}"
    browser.get(stack.url + "scope?key=" + urllib.request.quote(scope, safe=""))
    wait_for(browser, "#scope-state[data-state='allow']")
    browser.find_element(By.ID, "token").send_keys(token_path(stack.settings).read_text().strip())
    browser.find_element(By.ID, "reason").send_keys("runaway tool loop")
    browser.find_element(By.ID, "kill").click()
    wait_for(browser, "#scope-state[data-state='block']", timeout=20)
    wait_for(browser, "#scope-state-detail", text="manual: runaway tool loop")
    screenshot(browser, "dashboard-scope-killed", ARTIFACTS, tmp_path)
    browser.find_element(By.ID, "release").click()
    wait_for(browser, "#scope-state[data-state='allow']", timeout=20)


def test_requests_naming_another_host_are_refused(stack):
    for path, method in (("/", "GET"), ("/api/now", "GET"), ("/control", "POST")):
        status, body = request(stack, path, method=method, body={} if method == "POST" else None,
                               headers={"Host": "attacker.example:80"})
        assert status == 400, (path, status, body)


def test_kill_without_the_token_or_from_another_origin_is_refused_and_publishes_nothing(stack):
    scope = f"agent:untouched-{uuid.uuid4().hex[:6]}"
    token = token_path(stack.settings).read_text().strip()
    kill = {"action": "kill", "scope": scope, "reason": "test"}
    for headers, problem in (({}, "missing or wrong operator token"),
                             ({"X-Tokenfuse-Token": token[:-1] + "x"}, "missing or wrong operator token"),
                             ({"X-Tokenfuse-Token": token, "Origin": "http://attacker.example"}, "cross-origin")):
        status, body = request(stack, "/control", method="POST", body=kill,
                               headers={"Content-Type": "application/json", **headers})
        assert status == 403 and problem in json.loads(body)["error"]
    status, body = request(stack, "/api/scope?key=" + urllib.request.quote(scope, safe=""))
    assert status == 200 and json.loads(body)["live"]["state"] is None


def test_bad_api_parameters_are_one_clear_error(stack):
    for path, message in (("/api/scope?key=agent:*", "not a '*' pattern"),
                          ("/api/top?kind=planet", "--kind must be one of"),
                          ("/api/history?range=3y", "range must be one of")):
        status, body = request(stack, path)
        assert status == 400 and message in json.loads(body)["error"], (path, body)


def test_the_now_stream_starts_with_the_live_and_spend_parts(stack):
    host, port = stack.url.split("//")[1].strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/events/now")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    events = []
    while len(events) < 2:
        line = response.readline().decode().strip()
        if line.startswith("event:"):
            events.append(line.split(":", 1)[1].strip())
    connection.close()
    assert events == ["live", "spend"]


def test_metrics_count_the_open_streams_and_what_was_pushed(stack):
    host, port = stack.url.split("//")[1].strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/events/now")
    response = connection.getresponse()
    while not response.readline().startswith(b"event:"):
        pass
    status, body = request(stack, "/metrics")
    connection.close()
    assert status == 200
    values = {line.split()[0]: float(line.split()[1]) for line in body.decode().splitlines()
              if line.startswith("tokenfuse_dashboard_")}
    assert values["tokenfuse_dashboard_streams"] >= 1 and values["tokenfuse_dashboard_channels"] >= 1
    assert "tokenfuse_dashboard_pushes_total" in values and "tokenfuse_dashboard_errors_total" in values
