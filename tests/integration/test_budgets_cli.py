"""`tokenfuse budgets apply|list|delete` against the real broker's compacted budgets topic."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tokenfuse.budgets.store import read_budgets
from tokenfuse.cli.main import main
from tokenfuse.config import Settings
from tokenfuse.kafka.follow import watermarks

BUDGET_A = """\
  - id: team-hourly
    scope: team:acme/search
    metric: total_tokens
    limit: {limit}
    window: 1h
"""
BUDGET_B = """\
  - id: run-daily
    scope: "run:*"
    metric: cost_usd
    limit: 5
    window: day
    thresholds: [{percent: 80, action: warn}, {percent: 100, action: block}]
"""


@pytest.fixture
def cli(settings: Settings, monkeypatch, capsys):
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def budgets_file(tmp_path: Path, *entries: str) -> str:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n" + "".join(entries))
    return str(path)


def end_offset(settings: Settings) -> int:
    consumer = Consumer({**settings.kafka_config, "group.id": "unused"})
    try:
        return watermarks(consumer, TopicPartition(settings.topic("budgets"), 0))[1]  # retries "not leader"
    finally:
        consumer.close()


def test_apply_list_change_prune_and_delete(settings, cli, tmp_path):
    both = budgets_file(tmp_path, BUDGET_A.format(limit=1000), BUDGET_B)
    assert cli("budgets", "apply", both)[:2] == (0, textwrap.dedent("""\
        team-hourly: created
        run-daily: created
        2 created, 0 changed, 0 unchanged, 0 deleted
        """))
    budgets = read_budgets(settings)
    assert sorted(budgets) == ["run-daily", "team-hourly"]
    assert budgets["run-daily"]["limit"] == 5_000_000 and budgets["run-daily"]["metric"] == "cost_micro_usd"
    assert budgets["team-hourly"]["updated_at"] > 0

    # Re-applying the same file publishes nothing.
    written = end_offset(settings)
    code, out, _ = cli("budgets", "apply", both)
    assert (code, out.splitlines()[-1]) == (0, "0 created, 0 changed, 2 unchanged, 0 deleted")
    assert end_offset(settings) == written

    code, out, _ = cli("budgets", "list")
    assert code == 0
    table, spend = out.split("\n\n", 1)
    assert [line.split() for line in table.splitlines()] == [
        ["id", "scope", "metric", "window", "limit", "thresholds"],
        ["run-daily", "run:*", "cost_micro_usd", "day", "5,000,000", "80%warn,100%block"],
        ["team-hourly", "team:acme/search", "total_tokens", "1h", "1,000", "100%block"],
    ]
    # Spend comes from the history; this test's history is empty, so it says so in one line.
    assert spend.startswith("current spend"), spend

    # A changed limit and a budget gone from the file: dry run first, then for real.
    changed = budgets_file(tmp_path, BUDGET_A.format(limit=2000))
    code, out, _ = cli("budgets", "apply", "--dry-run", changed)
    assert out.splitlines() == ["team-hourly: would be changed", "run-daily: would be deleted",
                                "0 would be created, 1 would be changed, 0 unchanged, 1 would be deleted"]
    assert end_offset(settings) == written
    code, out, _ = cli("budgets", "apply", "--no-prune", changed)
    assert out.splitlines()[-1] == "0 created, 1 changed, 0 unchanged, 0 deleted"
    assert sorted(read_budgets(settings)) == ["run-daily", "team-hourly"]
    code, out, _ = cli("budgets", "apply", changed)
    assert out.splitlines() == ["team-hourly: unchanged", "run-daily: deleted",
                                "0 created, 0 changed, 1 unchanged, 1 deleted"]
    budgets = read_budgets(settings)
    assert list(budgets) == ["team-hourly"] and budgets["team-hourly"]["limit"] == 2000

    assert cli("budgets", "delete", "team-hourly")[:2] == (0, "team-hourly: deleted\n")
    assert read_budgets(settings) == {}
    assert cli("budgets", "list")[1] == "no budgets\n"


def test_user_mistakes_are_one_clear_error_and_publish_nothing(settings, cli, tmp_path):
    code, _, err = cli("budgets", "delete", "nope")
    assert (code, err) == (1, f"tokenfuse: no budget with id 'nope' in {settings.topic('budgets')}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - id: x\n    scope: galaxy\n")
    code, _, err = cli("budgets", "apply", str(bad))
    assert code == 1
    assert err.splitlines()[0] == f"tokenfuse: {bad}: invalid budgets (4 problems):"
    assert f"  - {bad}:3: budgets[0].scope: scope 'galaxy' must be 'global' or one of org, team, agent, " \
           "run, user, model, tag followed by ':<value>'" in err.splitlines()
    assert end_offset(settings) == 0


def test_a_missing_topic_is_reported(broker, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOKENFUSE_BOOTSTRAP_SERVERS", broker)
    monkeypatch.setenv("TOKENFUSE_TOPIC_PREFIX", "test-no-such-prefix")
    assert main(["budgets", "list"]) == 1
    assert capsys.readouterr().err == (
        "tokenfuse: topic test-no-such-prefix.budgets does not exist (run `tokenfuse topics create`)\n")


def test_applying_without_a_budget_key_is_one_clear_error(settings, cli, tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENFUSE_BUDGET_KEYS")
    code, _, err = cli("budgets", "apply", budgets_file(tmp_path, BUDGET_A.format(limit=10)))
    assert code == 1 and "TOKENFUSE_BUDGET_KEYS: required by the budget operator" in err
    assert "Traceback" not in err and end_offset(settings) == 0
