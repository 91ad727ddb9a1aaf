"""Issue 12 end to end on the real broker and embedded ClickHouse (through the sink): history →
`budgets recommend --out` → `budgets apply` → the worker blocks at the recommended limit; and
`report chargeback` on seeded history, adding up to the ClickHouse total."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer

from tests.helpers import UsageProducer, usage_event
from tokenfuse.budgets.store import read_budgets
from tokenfuse.cli.main import main
from tokenfuse.control.signing import encode_signed
from tokenfuse.dev.process import RoleProcess
from tokenfuse.history.sql import run_sql
from tokenfuse.kafka.codec import codec
from tokenfuse.kafka.follow import wait_until

HOUR, DAY = 3_600_000, 86_400_000


@pytest.fixture
def cli(settings, monkeypatch, capsys):
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def seed(settings, events) -> None:
    """Usage through the topic into the running sink; returns when ClickHouse holds all of it."""
    producer = UsageProducer(settings)
    for event in events:
        producer.send(event)
    producer.flush()
    stored = lambda: run_sql(settings, "SELECT count() FROM usage_events")["rows"][0][0] >= len(events)  # noqa: E731
    assert wait_until(stored, 60)


def test_recommended_budgets_apply_as_is_and_the_worker_blocks_at_the_recommended_limit(
        settings, cli, control, tmp_path):
    today = int(time.time() * 1000) // DAY * DAY
    history = [usage_event("bot-search", 1_000_000 + 50_000 * (d % 3), team="search", when_ms=today - d * DAY + 12 * HOUR)
               for d in range(1, 11)]
    history += [usage_event("bot-ads", 600_000, team="ads", when_ms=today - d * DAY + 12 * HOUR) for d in range(1, 11)]
    history += [usage_event("bot-new", 900_000, team="new", when_ms=today - d * DAY + 12 * HOUR) for d in range(1, 4)]
    parent = tmp_path / "parent.yaml"
    parent.write_text("budgets:\n  - {id: org-day, scope: 'org:acme', metric: cost_usd, limit: 1.5, window: day}\n")
    with RoleProcess("sink", settings, tmp_path / "sink.log"), RoleProcess("worker", settings, tmp_path / "worker.log"):
        seed(settings, history)
        assert cli("budgets", "apply", str(parent))[0] == 0

        out_file = tmp_path / "recommended.yaml"
        code, out, err = cli("budgets", "recommend", "--scope", "team:*", "--window", "day", "--metric", "cost",
                             "--lookback", "30d", "--out", str(out_file))
        assert code == 0, err
        assert "team:acme/new: too little history (3 windows < 7), no recommendation" in out
        assert "parent: budget org-day (org:acme): limit 1.5, children sum" in out and "scaled by" in out
        assert f"wrote {out_file}: 2 recommended, 1 kept" in out

        code, out, err = cli("budgets", "apply", str(out_file))
        assert code == 0, err
        assert out.splitlines()[-1] == "2 created, 0 changed, 1 unchanged, 0 deleted"
        budgets = read_budgets(settings)
        search, ads = budgets["rec-team:acme.search-day-cost"], budgets["rec-team:acme.ads-day-cost"]
        assert search["limit"] + ads["limit"] == 1_500_000  # scaled to the parent exactly
        assert search["thresholds"] == [{"percent": 80, "action": "warn"}, {"percent": 100, "action": "block"}]
        limit = search["limit"]

        # Today: one micro-dollar short of the limit, then the micro-dollar that reaches it.
        usage = UsageProducer(settings)
        usage.send(usage_event("bot-search", limit - 1, team="search"))
        usage.send(usage_event("bot-search", 1, team="search"))
        usage.flush()
        blocked = lambda: control.snapshot().get("team:acme/search", {}).get("state") == "block"  # noqa: E731
        assert wait_until(blocked, 30), control.snapshot()
        state = control.snapshot()["team:acme/search"]
        assert (state["budget_id"], state["spent"], state["limit"]) == ("rec-team:acme.search-day-cost", limit, limit)
        assert "team:acme/ads" not in control.snapshot() or control.snapshot()["team:acme/ads"]["state"] != "block"


def month_start(ms: int) -> int:
    when = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return int(datetime(when.year, when.month, 1, tzinfo=timezone.utc).timestamp() * 1000)


def test_chargeback_of_last_month_adds_up_to_the_clickhouse_total(settings, cli, tmp_path):
    this_month = month_start(int(time.time() * 1000))
    start = month_start(this_month - 1)
    label = datetime.fromtimestamp(start / 1000, timezone.utc).strftime("%Y-%m")
    events = [usage_event("bot-search", 1_000_003 + d, team="search", when_ms=start + d * DAY + HOUR,
                          run=f"r-{d % 4}", cached_tokens=0) for d in range(25)]
    events += [usage_event("bot-ads", 333_333, team="ads", when_ms=start + d * DAY + 2 * HOUR, run=f"a-{d}")
               for d in range(12)]
    events += [usage_event("bot-ops", 2_000_001, team="platform", when_ms=start + d * DAY + 3 * HOUR) for d in range(7)]
    events.append(usage_event("bot-search", 5_000_000, team="search", when_ms=this_month + HOUR))  # not last month
    producer = Producer(settings.kafka_config)
    alert = {"alert_id": "a|team:acme/search", "kind": "threshold", "scope": "team:acme/search",
             "created_at": start + DAY}
    producer.produce(settings.topic("alerts"), key=b"team:acme/search", value=codec("Alert").encode(alert))
    state = {"scope": "team:acme/search", "state": "block", "issued_at": start + DAY, "until": start + 2 * DAY}
    producer.produce(settings.topic("control"), key=b"team:acme/search",
                     value=encode_signed(state, settings.control_signer()))
    assert producer.flush(30) == 0
    with RoleProcess("sink", settings, tmp_path / "sink.log"):
        seed(settings, events)
        assert wait_until(lambda: run_sql(settings, "SELECT count() FROM control_changes")["rows"][0][0] == 1, 30)
        total = run_sql(settings, "SELECT sum(cost_micro_usd) FROM usage_events WHERE toStartOfMonth(event_time) = "
                                  "toDate({m:String})", {"m": f"{label}-01"})["rows"][0][0]
        assert int(total) == sum(1_000_003 + d for d in range(25)) + 12 * 333_333 + 7 * 2_000_001

        code, out, err = cli("report", "chargeback", "--period", label, "--by", "team", "--shared",
                             "team:acme/platform", "--allocate", "even", "--format", "json",
                             "--markdown-dir", str(tmp_path / "mail"))
        assert code == 0, err
        report = json.loads(out)
        rows = {r["group"]: r for r in report["rows"]}
        assert report["total_micro_usd"] == int(total)
        assert sum(r["charged_micro_usd"] for r in report["rows"]) == int(total)  # nothing unallocated here
        assert rows["team:acme/platform"]["charged_micro_usd"] == 0
        # 14,000,007 evenly; the odd micro-dollar to the first group in name order
        assert (rows["team:acme/ads"]["shared_micro_usd"], rows["team:acme/search"]["shared_micro_usd"]) == (
            7_000_004, 7_000_003)
        search = rows["team:acme/search"]
        assert (search["calls"], search["runs"], search["alerts"], search["blocks"]) == (25, 4, 1, 1)
        assert search["forecast_micro_usd"] == search["direct_micro_usd"]  # a closed month
        summaries = sorted(p.name for p in (tmp_path / "mail").iterdir())
        assert summaries == ["team_acme_ads.md", "team_acme_platform.md", "team_acme_search.md"]
        text = (tmp_path / "mail" / "team_acme_search.md").read_text()
        assert f"# team:acme/search: spend in {label}" in text and "**Alerts:** 1; **blocks:** 1" in text

        code, out, _ = cli("report", "chargeback", "--period", label, "--format", "csv")
        parsed = list(csv.DictReader(io.StringIO(out)))
        assert sum(int(r["charged_micro_usd"]) for r in parsed) == int(total)
        code, out, _ = cli("report", "chargeback", "--period", label)
        assert out.splitlines()[0].startswith(f"chargeback {label} by team (closed month)")
        assert out.splitlines()[-1].split()[:3] == ["total", f"{int(total) / 1e6:,.2f}", f"{int(total) / 1e6:,.2f}"]


@pytest.mark.parametrize("argv, message", [
    (["report", "chargeback", "--period", "2026-13"], "tokenfuse: --period must be a month like 2026-11, got '2026-13'"),
    (["report", "chargeback", "--period", "2026-10", "--by", "galaxy"],
     "tokenfuse: --by must be one of team, org, agent, user, model or tag:KEY, got 'galaxy'"),
    (["report", "chargeback", "--period", "2026-10", "--shared", "agent:x"],
     "tokenfuse: shared cost: 'agent:x' is not a group of --by team (they look like team:...)"),
    (["report", "chargeback", "--period", "2026-10", "--shared", "team:a/b", "--allocate", "fixed"],
     "tokenfuse: --allocate must be even or proportional (fixed amounts need --shared-config)"),
    (["budgets", "recommend", "--scope", "team:*", "--window", "day", "--metric", "dollars"],
     "tokenfuse: --metric must be one of cost, cost_usd, cost_micro_usd, total_tokens, input_tokens, output_tokens"),
    (["budgets", "recommend", "--scope", "team:*", "--window", "rolling:60s"],
     "tokenfuse: --window: recommendations need tumbling or calendar windows, not rolling ones"),
    (["budgets", "recommend", "--scope", "team:*", "--window", "day", "--parent", "nope"],
     "tokenfuse: --parent: no budget with id 'nope' in the budgets topic"),
    (["budgets", "recommend", "--scope", "galaxy", "--window", "day"],
     "tokenfuse: scope 'galaxy' must be 'global' or one of org, team, agent, run, user, model, tag followed by "
     "':<value>'"),
])
def test_invalid_flags_are_one_clear_line(cli, argv, message):
    code, _, err = cli(*argv)
    assert (code, err) == (1, message + "\n")
