"""Budget files: what a valid file becomes, and the exact messages for mistakes (all at once)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tokenfuse.budgets.spec import load_budgets
from tokenfuse.cli.budgets import format_table
from tokenfuse.kafka.codec import codec
from tokenfuse.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NO_DETECTION = {"forecast": None, "loop": None, "spike": None}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_budgets(path, "budgets.yaml")
    assert str(err.value).startswith(f"budgets.yaml: invalid budgets ({len(err.value.problems)} problem")
    return err.value.problems


def test_a_valid_file_becomes_budget_records(tmp_path):
    path = write(tmp_path, """\
        budgets:
          - id: run-daily-5usd
            scope: "run:*"
            metric: cost_usd
            limit: 5.25
            window: day
            timezone: Europe/Paris
            thresholds:
              - {percent: 80, action: warn}
              - {percent: 100, action: block}
          - id: team.tokens:hourly
            scope: team:acme/search
            metric: total_tokens
            limit: 2_000_000
            window: 1h
            description: search team
        """)
    budgets = load_budgets(path, now_ms=1234)
    assert budgets == [
        {"id": "run-daily-5usd", "scope": "run:*", "metric": "cost_micro_usd", "window": "day",
         "timezone": "Europe/Paris", "limit": 5_250_000, "description": "", "updated_at": 1234, **NO_DETECTION,
         "thresholds": [{"percent": 80, "action": "warn"}, {"percent": 100, "action": "block"}]},
        {"id": "team.tokens:hourly", "scope": "team:acme/search", "metric": "total_tokens", "window": "1h",
         "timezone": "UTC", "limit": 2_000_000, "description": "search team", "updated_at": 1234, **NO_DETECTION,
         "thresholds": [{"percent": 100, "action": "block"}]},
    ]
    for budget in budgets:
        assert codec("Budget").decode(codec("Budget").encode(budget)) == {**budget, "deleted": False, "key_id": "",
                                                                          "signature": b""}


def test_cost_usd_converts_exactly_to_micro_usd(tmp_path):
    # 0.1 + 0.2 style float error would give 300000.00000000006 micro-USD
    path = write(tmp_path, "budgets:\n- {id: a, scope: global, metric: cost_usd, limit: 0.3, window: 1h}\n"
                           "- {id: b, scope: global, metric: cost_usd, limit: 1234567.000001, window: 1h}\n")
    assert [b["limit"] for b in load_budgets(path)] == [300_000, 1_234_567_000_001]


def test_many_mistakes_are_reported_at_once_with_line_and_field(tmp_path):
    path = write(tmp_path, """\
        budgets:
          - id: run-daily
            scope: "run:*"
            metric: cost_usd
            limit: 5.0000001
            window: day
          - id: team-hourly
            scope: team:acme
            metric: total_tokens
            limit: -100
            window: fortnight
            thresholds:
              - {percent: 90, action: warn}
              - {percent: 80, action: block}
          - id: run-daily
            scope: agent:*
            metric: tokens
            windw: 1h
            limit: 10
          - id: zoned
            scope: global
            metric: input_tokens
            limit: 1.5
            window: month
            timezone: Mars/Olympus
            thresholds:
              - {percent: 0, action: kill}
            extra: 1
        """)
    assert problems(path) == [
        "budgets.yaml:5: budgets[0].limit: 5.0000001 USD has more than 6 decimals (1 micro-USD)",
        "budgets.yaml:8: budgets[1].scope: team scope 'team:acme' must look like team:<org>/<team>",
        "budgets.yaml:10: budgets[1].limit: must be a positive integer, got -100",
        "budgets.yaml:11: budgets[1].window: window 'fortnight' must be a duration (1m...7d), "
        "'day', 'month' or 'rolling:<duration>'",
        "budgets.yaml:14: budgets[1].thresholds[1].percent: 80 must be greater than the previous "
        "threshold's 90 (strictly increasing)",
        "budgets.yaml:15: budgets[2]: missing required field 'window'",
        "budgets.yaml:15: budgets[2].id: duplicate id 'run-daily' (first at line 2)",
        "budgets.yaml:17: budgets[2].metric: 'tokens' is not one of input_tokens, output_tokens, "
        "total_tokens, cost_micro_usd, cost_usd",
        "budgets.yaml:18: budgets[2]: unknown field 'windw' (did you mean 'window'?)",
        "budgets.yaml:23: budgets[3].limit: must be a positive integer, got 1.5",
        "budgets.yaml:25: budgets[3].timezone: unknown time zone 'Mars/Olympus' (use an IANA name like Europe/Paris)",
        "budgets.yaml:27: budgets[3].thresholds[0].percent: must be an integer from 1 to 1000, got 0",
        "budgets.yaml:27: budgets[3].thresholds[0].action: 'kill' is not one of alert, warn, throttle, block",
        "budgets.yaml:28: budgets[3]: unknown field 'extra' (known: id, scope, metric, window, timezone, "
        "limit, thresholds, description, forecast, loop, spike)",
    ]


def test_structural_mistakes(tmp_path):
    path = write(tmp_path, """\
        budget:
          - id: x
        """)
    assert problems(path) == [
        "budgets.yaml:1: unknown field 'budget' (did you mean 'budgets'?)",
        "budgets.yaml:1: missing the 'budgets:' list",
    ]
    path = write(tmp_path, """\
        budgets:
          - just-a-string
          - id: "bad id!"
            id: again
            scope: org:acme
            metric: total_tokens
            limit: "10"
            window: rolling:2h
            thresholds: []
          - id: y
            scope: org:acme
            metric: total_tokens
            limit: 10
            window: 1h
            thresholds: [{}]
        """)
    assert problems(path) == [
        "budgets.yaml:2: budgets[0]: must be a mapping, got 'just-a-string'",
        "budgets.yaml:3: budgets[1].id: 'bad id!' may only contain letters, digits and . _ : -",
        "budgets.yaml:4: budgets[1]: duplicate key 'id' (first at line 3)",
        "budgets.yaml:7: budgets[1].limit: must be a positive integer, got '10'",
        "budgets.yaml:8: budgets[1].window: rolling window 'rolling:2h' is longer than 1h; use a tumbling window",
        "budgets.yaml:9: budgets[1].thresholds: must list at least one threshold (or be left out for 100% block)",
        "budgets.yaml:15: budgets[2].thresholds[0]: missing required field 'percent'",
        "budgets.yaml:15: budgets[2].thresholds[0]: missing required field 'action'",
    ]


def test_a_yaml_syntax_error_names_its_line(tmp_path):
    path = write(tmp_path, """\
        budgets:
          - id: a
            scope: [global
          - id: b
        """)
    with pytest.raises(ConfigError) as err:
        load_budgets(path, "budgets.yaml")
    assert str(err.value) == ("budgets.yaml:4: YAML syntax error: expected ',' or ']', but got ':' "
                              "(while parsing a flow sequence started at line 3)")


def test_an_empty_file_is_an_error_not_an_empty_budget_list(tmp_path):
    assert problems(write(tmp_path, "# nothing\n")) == ["budgets.yaml: the file is empty; expected a 'budgets:' list"]


def test_the_shipped_example_is_valid_and_lists_as_a_table():
    budgets = load_budgets(REPO / "deploy" / "budgets.example.yaml")
    assert len(budgets) >= 5
    table = format_table(budgets).splitlines()
    assert table[0].split() == ["id", "scope", "metric", "window", "limit", "thresholds"]
    monthly = next(line for line in table if line.startswith("acme-monthly "))
    assert monthly.split() == ["acme-monthly", "org:acme", "cost_micro_usd", "month@Europe/Paris",
                               "25,000,000,000", "50%alert,80%warn,100%block"]


def test_forecast_loop_and_spike_settings_become_fields_with_defaults(tmp_path):
    path = write(tmp_path, """\
        budgets:
          - id: team-daily
            scope: team:acme/*
            metric: cost_usd
            limit: 100
            window: day
            forecast: {warn_before: 45m, action: throttle}
            spike: {factor: 2.5}
          - id: agents
            scope: agent:*
            metric: total_tokens
            limit: 1000
            window: 1h
            loop: {repeats: 4, within: 2m, action: block, per: agent}
          - id: runs
            scope: run:*
            metric: total_tokens
            limit: 1000
            window: 1h
            loop: {}
        """)
    team, agents, runs = load_budgets(path)
    assert team["forecast"] == {"warn_before_ms": 2_700_000, "action": "throttle"}
    assert agents["loop"] == {"repeats": 4, "within_ms": 120_000, "action": "block", "per": "agent"}
    assert team["spike"] == {"factor": 2.5, "baseline_ms": 3_600_000, "action": "alert"}
    assert runs["loop"] == {"repeats": 5, "within_ms": 60_000, "action": "alert", "per": "run"}
    assert runs["forecast"] is None and runs["spike"] is None
    for budget in (team, agents, runs):
        assert codec("Budget").decode(codec("Budget").encode(budget)) == {**budget, "deleted": False, "key_id": "",
                                                                          "signature": b""}


def test_invalid_forecast_loop_and_spike_settings_name_their_line_and_field(tmp_path):
    path = write(tmp_path, """\
        budgets:
          - id: a
            scope: team:acme/*
            metric: total_tokens
            limit: 1000
            window: 1h
            forecast: {warn_before: 2h, action: block}
            loop: {repeats: 1, within: soon, per: team, actions: alert}
            spike: {factor: 0.5, baseline: 1m, action: kill}
          - id: b
            scope: agent:*
            metric: total_tokens
            limit: 1000
            window: rolling:60s
            forecast: {}
            loop: 5
          - id: c
            scope: run:*
            metric: total_tokens
            limit: 1000
            window: 1h
            loop: {per: agent}
        """)
    assert problems(path) == [
        "budgets.yaml:7: budgets[0].forecast.action: 'block' is not one of alert, warn, throttle",
        "budgets.yaml:7: budgets[0].forecast.warn_before: must be shorter than the budget's window",
        "budgets.yaml:8: budgets[0].loop: unknown field 'actions' (did you mean 'action'?)",
        "budgets.yaml:8: budgets[0].loop.repeats: must be an integer from 2 to 1000, got 1",
        "budgets.yaml:8: budgets[0].loop.within: must be a duration like 30s, 5m or 1h, got 'soon'",
        "budgets.yaml:8: budgets[0].loop.per: 'team' is not one of run, agent",
        "budgets.yaml:9: budgets[0].spike.factor: must be a number above 1 (at most 1000), got 0.5",
        "budgets.yaml:9: budgets[0].spike.baseline: 1m is out of range (from 600s to 86400s)",
        "budgets.yaml:9: budgets[0].spike.action: 'kill' is not one of alert, warn, throttle, block",
        "budgets.yaml:15: budgets[1].forecast: a rolling window has no end to forecast; use a tumbling or calendar window",
        "budgets.yaml:16: budgets[1].loop: must be a mapping, got 5",
        "budgets.yaml:22: budgets[2].loop.per: loops per agent are counted on a agent:* budget, not on 'run:*'",
    ]
