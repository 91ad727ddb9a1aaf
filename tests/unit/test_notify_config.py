"""The notifications file: the example parses, and a bad file gets every problem with its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tokenfuse.config.yamlnodes import compose_text
from tokenfuse.errors import ConfigError
from tokenfuse.notify.config import load_notifications, parse_notifications

REPO = Path(__file__).resolve().parents[2]
ENV = {"TOKENFUSE_WEBHOOK_SECRET": "s3cret", "TOKENFUSE_SLACK_SEARCH_URL": "https://hooks.slack.com/services/T/B/x"}


def parse(text: str, env=ENV):
    return parse_notifications(compose_text(text, "n.yaml"), "n.yaml", env)


def test_the_example_file_parses_with_its_secrets_from_the_environment():
    config = load_notifications(REPO / "deploy/notifications.example.yaml", ENV)
    assert set(config.channels) == {"platform-webhook", "search-slack", "oncall-mail"}
    assert config.channels["platform-webhook"].secret == b"s3cret"
    assert config.channels["search-slack"].url == ENV["TOKENFUSE_SLACK_SEARCH_URL"]
    assert config.channels["oncall-mail"].email.recipients == ("oncall@example.com",)
    assert config.routes[2].digest_ms == 600_000 and config.routes[1].renotify_ms == 3_600_000
    assert config.delivery.retries == 6 and config.delivery.disable_after == 5
    assert "s3cret" not in repr(config) and "hooks.slack.com" not in repr(config)


def test_every_problem_is_reported_at_once_with_its_line():
    text = """\
notifications:
  dashboard_url: ftp://nope
  channels:
    hook: {type: webhook, url: https://h.example/x, secret_env: MISSING_SECRET}
    chat: {type: slack, url: https://s.example/x, colour: red}
    pager: {type: pagerduty}
  routes:
    - channels: [hook, nowhere]
      events: [fired, exploded]
      min_severity: loud
      digest: soon
  delivery: {retries: -1, backoff: 2m, max_backoff: 1m}
"""
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.problems == [
        "n.yaml:2: notifications.dashboard_url: 'ftp://nope' is not an http(s) URL",
        "n.yaml:4: notifications.channels.hook.secret_env: environment variable MISSING_SECRET is not set",
        "n.yaml:5: notifications.channels.chat: unknown field 'colour' (known: type, timeout, rate_per_minute, "
        "burst, url, url_env)",
        "n.yaml:6: notifications.channels.pager.type: must be one of webhook, slack, email, got 'pagerduty'",
        "n.yaml:8: notifications.routes[0].channels: unknown channel 'nowhere' (channels: chat, hook, pager)",
        "n.yaml:9: notifications.routes[0].events[1]: must be one of fired, cleared, blocked, released, "
        "got 'exploded'",
        "n.yaml:10: notifications.routes[0].min_severity: must be one of info, warning, critical",
        "n.yaml:11: notifications.routes[0].digest: 'soon' is not a duration like 30s, 5m, 1h or 7d",
        "n.yaml:12: notifications.delivery.retries: must be an integer from 0 to 100, got -1",
        "n.yaml:12: notifications.delivery.max_backoff: must not be shorter than backoff",
    ]


def test_a_webhook_needs_a_signing_secret_and_one_url():
    with pytest.raises(ConfigError) as err:
        parse("notifications:\n  channels:\n    hook: {type: webhook}\n  routes: [{channels: [hook]}]\n")
    assert err.value.problems == [
        "n.yaml:3: notifications.channels.hook.url: give exactly one of 'url' or 'url_env' "
        "(an environment variable holding a secret URL)",
        "n.yaml:3: notifications.channels.hook.secret_env: missing: webhooks are signed; name the environment "
        "variable holding the key",
    ]


def test_missing_sections_and_an_empty_file_are_reported():
    with pytest.raises(ConfigError, match=r"n.yaml: the file is empty"):
        parse("")
    with pytest.raises(ConfigError) as err:
        parse("notifications: {}\nbudgets: []\n")
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [
        "notifications.channels: missing: name at least one channel",
        "notifications.routes: missing: add at least one route (channels: [...])",
        "unknown field 'budgets' (known: notifications)",
    ]


def test_the_cli_prints_file_line_errors_without_a_traceback(tmp_path):
    bad = tmp_path / "n.yaml"
    bad.write_text("notifications:\n  channels: {x: {type: slack, url: 'https://s.example/x', burst: 0}}\n"
                   "  routes: [{channels: [x], renotify: 0s}]\n")
    result = subprocess.run([sys.executable, "-m", "tokenfuse.cli.main", "notify", "--check", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{bad}:2: notifications.channels.x.burst: must be an integer from 1 to 100000, got 0" in result.stderr
    assert f"{bad}:3: notifications.routes[0].renotify: '0s' is not a duration" in result.stderr


def test_the_notifier_refuses_to_start_without_the_key_that_verifies_control_states():
    from tokenfuse.config import Settings
    from tokenfuse.notify.app import Notifier

    config = load_notifications(REPO / "deploy/notifications.example.yaml", ENV)
    with pytest.raises(ConfigError) as err:
        Notifier(Settings(), config)
    assert err.value.problems == ["TOKENFUSE_CONTROL_KEY: required by the notifier (verifies the control states it "
                                  "tells people about)"]
