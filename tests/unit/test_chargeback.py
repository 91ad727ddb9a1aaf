"""Chargeback: shared-cost allocation to the micro-dollar, its config, months and forecasts, budgets
per group, and the report on known history in the embedded ClickHouse (and the SQL views)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from tests.history_helpers import chdb_settings, history, runner  # noqa: F401 - fixtures
from tokenfuse.errors import ConfigError
from tokenfuse.history import rows
from tokenfuse.history.chargeback import Grouping, Month, binding_budget, chargeback, monthly_amount
from tokenfuse.history.reports import ReportError
from tokenfuse.history.shared_cost import UNTAGGED, Rule, allocate, check, load_rules
from tokenfuse.history.store import Pending, write
from tokenfuse.usage.pricing import PriceCatalog

DAY = 86_400_000
NOV = int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp() * 1000)
DEC = int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp() * 1000)


def test_even_proportional_and_fixed_allocation():
    direct = {"team:a/x": 600, "team:a/y": 300, "team:a/z": 0, "team:a/platform": 1001}
    shared = allocate(direct, [Rule("team:a/platform", "proportional")])
    assert shared.shared == {"team:a/x": 667, "team:a/y": 334, "team:a/z": 0, "team:a/platform": -1001}
    shared = allocate(direct, [Rule("team:a/platform", "even")])
    assert shared.shared == {"team:a/x": 334, "team:a/y": 334, "team:a/z": 333, "team:a/platform": -1001}
    shared = allocate(direct, [Rule("team:a/platform", "fixed", amounts=(("team:a/y", 800), ("team:a/x", 500)))])
    assert shared.shared["team:a/y"] == 800 and shared.shared["team:a/x"] == 201 and shared.unallocated == 0
    shared = allocate(direct, [Rule("team:a/platform", "fixed", amounts=(("team:a/y", 100),))])
    assert (shared.shared["team:a/y"], shared.unallocated) == (100, 901)
    assert shared.notes == ["team:a/platform: 901 micro-USD beyond the fixed amounts: unallocated"]
    shared = allocate({"team:a/p": 50, UNTAGGED: 7}, [Rule("team:a/p", "even"), Rule(UNTAGGED, "even")])
    assert shared.unallocated == 57  # no one left to share with


def test_recipients_that_spent_nothing_share_proportional_cost_evenly():
    assert allocate({"a:1": 0, "a:2": 0, "a:p": 5}, [Rule("a:p", "proportional")]).shared == {
        "a:1": 3, "a:2": 2, "a:p": -5}


groups = st.dictionaries(st.sampled_from([f"team:a/{n}" for n in "abcdefgh"] + [UNTAGGED]),
                         st.integers(min_value=0, max_value=10**13), min_size=1)


@given(groups, st.data())
def test_charged_amounts_and_the_unallocated_rest_add_up_to_the_total_exactly(direct, data):
    names = sorted(direct)
    sources = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
    rules = []
    for source in sources:
        method = data.draw(st.sampled_from(["even", "proportional", "fixed"]))
        others = [n for n in names if n not in sources and n != UNTAGGED]
        to = tuple(data.draw(st.lists(st.sampled_from(others), unique=True))) if others else ()
        amounts = tuple((g, data.draw(st.integers(min_value=0, max_value=10**13)))
                        for g in (to or others)) if method == "fixed" else ()
        rules.append(Rule(source, method, to, amounts))
    result = allocate(direct, rules)
    charged = {g: direct.get(g, 0) + result.shared.get(g, 0) for g in set(direct) | set(result.shared)}
    assert sum(charged.values()) + result.unallocated == sum(direct.values())
    assert all(charged[s] == 0 for s in sources)  # a source keeps nothing of its own cost
    assert all(v >= 0 for v in charged.values()) and result.unallocated >= 0


def test_shared_cost_config_reports_every_problem_with_its_line(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text("shared:\n"
                    "  - source: team:acme/platform\n"
                    "    method: proportional\n"
                    "  - source: untagged\n"
                    "    method: fixed\n"
                    "    amounts: {team:acme/search: 12.5, team:acme/ads: 0.0000001}\n"
                    "  - method: sideways\n"
                    "    colour: red\n")
    with pytest.raises(ConfigError) as error:
        load_rules(path)
    assert str(error.value).splitlines() == [
        f"{path}: invalid shared cost (4 problems):",
        f"  - {path}:6: shared[1].amounts.team:acme/ads: must be a USD amount >= 0 with up to 6 decimals, got 1e-07",
        f"  - {path}:7: shared[2]: missing required field 'source'",
        f"  - {path}:7: shared[2].method: 'sideways' is not one of even, proportional, fixed",
        f"  - {path}:8: shared[2]: unknown field 'colour' (known: source, method, to, amounts)",
    ]
    path.write_text("shared:\n  - {source: untagged, method: fixed, amounts: {team:acme/search: 12.5}}\n")
    assert load_rules(path) == [Rule("untagged", "fixed", (), (("team:acme/search", 12_500_000),))]


def test_rules_must_name_groups_of_the_report():
    with pytest.raises(ReportError, match="'agent:x' is not a group of --by team"):
        check([Rule("agent:x", "even")], "team:", "team")
    with pytest.raises(ReportError, match="'team:a/p' is a shared source and cannot receive"):
        check([Rule("team:a/p", "even"), Rule("team:a/q", "even", to=("team:a/p",))], "team:", "team")
    with pytest.raises(ReportError, match="shared twice"):
        check([Rule("team:a/p", "even"), Rule("team:a/p", "proportional")], "team:", "team")


def test_months_forecasts_and_groupings():
    now = NOV + 10 * DAY
    month = Month.parse("2026-11", now)
    assert (month.start_ms, month.end_ms, month.current) == (NOV, DEC, True)
    assert month.forecast(1_000) == 3_000  # 10 of 30 days: projected linearly
    assert Month.parse("2026-10", now).forecast(1_000) == 1_000  # closed month: the actual
    for bad, message in (("2026-13", "month like 2026-11"), ("Nov", "month like"), ("2026-12", "not started")):
        with pytest.raises(ReportError, match=message):
            Month.parse(bad, now)
    assert Grouping.parse("tag:env").prefix == "tag:env="
    assert Grouping.parse("team").prefix == "team:"
    for bad in ("galaxy", "tag", "tag:a=b", "team:x"):
        with pytest.raises(ReportError, match="--by must be one of"):
            Grouping.parse(bad)


def test_the_binding_budget_of_a_group_for_the_month():
    month = Month.parse("2026-11", NOV + DAY)
    day = {"id": "teams-day", "scope": "team:*", "window": "day", "timezone": "UTC", "limit": 10}
    hourly = {"id": "teams-1h", "scope": "team:acme/*", "window": "1h", "timezone": "UTC", "limit": 1}
    exact = {"id": "search-month", "scope": "team:acme/search", "window": "month", "timezone": "UTC", "limit": 900}
    assert monthly_amount(day, month) == 300 and monthly_amount(hourly, month) == 720
    assert binding_budget([day, hourly, exact], "team:acme/search", month) == ("search-month", 900)
    assert binding_budget([day, hourly], "team:acme/ads", month) == ("teams-day", 300)
    assert binding_budget([hourly], "team:other/x", month) is None


def usage(team, cost, when, run=None, user=None, tags=None, cached=0):
    return {"event_id": str(uuid.uuid4()), "event_time": when, "org": "acme", "team": team, "agent": f"bot-{team}",
            "run": run, "user": user, "model": "gpt-4o-mini" if cost % 2 else "gpt-4o", "provider": "openai",
            "input_tokens": 100, "output_tokens": 10, "cached_tokens": cached, "cost_micro_usd": cost,
            "tags": tags or {}}


def store(h, table, records):
    pending = Pending(table)
    for n, row in enumerate(records):
        pending.add(row, "t", 0, n)
    write(h, pending)


@pytest.fixture
def november(history):
    catalog = PriceCatalog.load()
    events = [usage("search", 1_000_001 + d, NOV + d * DAY, run=f"s-{d % 3}", tags={"env": "prod"}, cached=40)
              for d in range(20)]
    events += [usage("ads", 333_333, NOV + d * DAY + 5, run=f"a-{d}", user="alice") for d in range(10)]
    events += [usage("platform", 2_000_003, NOV + d * DAY + 7, tags={"env": "dev"}) for d in range(5)]
    events.append(usage("search", 9_999_999, DEC + DAY))  # December: not in the report
    store(history, rows.USAGE, [rows.usage_row(e, catalog, 0, n) for n, e in enumerate(events)])
    budget = {"id": "teams-day", "scope": "team:*", "metric": "cost_micro_usd", "window": "day", "timezone": "UTC",
              "limit": 500_000, "thresholds": [], "description": "", "updated_at": NOV}
    store(history, rows.BUDGETS, [rows.budget_row(budget, 0, 0, NOV)])
    alert = {"alert_id": "x", "kind": "threshold", "scope": "team:acme/search", "budget_id": "teams-day",
             "threshold_percent": 100, "action": "block", "metric": "cost_micro_usd", "spent": 1, "limit": 1,
             "window_start": None, "window_end": None, "event_id": None, "created_at": NOV + DAY, "message": "m"}
    store(history, rows.ALERTS, [rows.alert_row(alert), rows.alert_row(dict(alert, alert_id="y"))])
    state = {"scope": "team:acme/search", "state": "block", "budget_id": "teams-day", "reason": "r", "metric": None,
             "spent": None, "limit": None, "window_start": None, "until": None, "throttle_delay_ms": None,
             "issued_at": NOV + DAY, "key_id": "k"}
    store(history, rows.CONTROL, [rows.control_row(state, True, 0, 1)])
    return runner(history)


def raw_total(history, start, end):
    return history.select("SELECT sum(cost_micro_usd) FROM usage_events WHERE event_time >= "
                          "fromUnixTimestamp64Milli({s:Int64}) AND event_time < fromUnixTimestamp64Milli({e:Int64})",
                          {"s": start, "e": end}).rows[0][0]


def test_chargeback_by_team_adds_up_to_the_clickhouse_total_to_the_micro_dollar(november, history):
    month = Month.parse("2026-11", DEC + 2 * DAY)
    report = chargeback(november, month, Grouping.parse("team"), [Rule("team:acme/platform", "proportional")])
    total = raw_total(history, NOV, DEC)
    assert report.total == total == sum(1_000_001 + d for d in range(20)) + 10 * 333_333 + 5 * 2_000_003
    assert sum(r.charged for r in report.rows) + report.unallocated == total
    by = {r.group: r for r in report.rows}
    search, ads, platform = by["team:acme/search"], by["team:acme/ads"], by["team:acme/platform"]
    assert platform.charged == 0 and platform.shared == -10_000_015
    assert search.shared + ads.shared == 10_000_015
    quota = 10_000_015 * search.direct // (search.direct + ads.direct)
    assert quota <= search.shared <= quota + 1  # proportional to own cost, largest remainder
    assert (search.calls, search.runs, search.cost_per_run) == (20, 3, search.direct // 3)
    assert (search.alerts, search.blocks) == (2, 1)
    assert search.cached_share == 0.4
    assert (search.budget_id, search.budget) == ("teams-day", 15_000_000)  # 500k a day x 30 days
    assert search.forecast == search.direct and search.variance == search.direct - 15_000_000
    assert set(search.models) == {"gpt-4o", "gpt-4o-mini"} and sum(search.models.values()) == search.direct


def test_chargeback_by_tag_shows_the_untagged_rest_and_can_share_it(november, history):
    month = Month.parse("2026-11", DEC + 2 * DAY)
    plain = chargeback(november, month, Grouping.parse("tag:env"))
    by = {r.group: r.direct for r in plain.rows}
    assert by[UNTAGGED] == 10 * 333_333
    assert sum(by.values()) == raw_total(history, NOV, DEC)
    shared = chargeback(november, month, Grouping.parse("tag:env"), [Rule(UNTAGGED, "even")])
    charged = {r.group: r.charged for r in shared.rows}
    assert charged[UNTAGGED] == 0 and charged["tag:env=prod"] - by["tag:env=prod"] == 10 * 333_333 // 2
    assert sum(charged.values()) + shared.unallocated == shared.total


def test_the_sql_views_give_the_reports_numbers(november, history):
    report = chargeback(november, Month.parse("2026-11", DEC + 2 * DAY), Grouping.parse("team"))
    views = dict(history.select("SELECT scope, cost_micro_usd FROM spend_monthly WHERE startsWith(scope, 'team:') "
                                "AND month = '2026-11-01'").rows)
    assert views == {r.group: r.direct for r in report.rows}
    daily = history.select("SELECT sum(cost_micro_usd) FROM spend_daily WHERE scope = 'global' "
                           "AND day >= '2026-11-01' AND day < '2026-12-01'").rows[0][0]
    assert daily == report.total
    assert history.select("SELECT budget_id, `limit` FROM budgets_current").rows == [("teams-day", 500_000)]
    assert history.select("SELECT alerts FROM alerts_monthly WHERE scope = 'team:acme/search'").rows == [(2,)]
    assert history.select("SELECT blocks FROM blocks_monthly WHERE scope = 'team:acme/search'").rows == [(1,)]


RAW_RUNS = {  # --by kind -> (group expression, filter) over the raw events: what runs_by_day must equal
    "team": ("concat('team:', org, '/', team)", "1"), "agent": ("concat('agent:', agent)", "1"),
    "user": ("concat('user:', assumeNotNull(user))", "ifNull(user, '') != ''"),
    "tag:env": ("concat('tag:env=', tags['env'])", "mapContains(tags, 'env')"),
}


@pytest.mark.parametrize("by", sorted(RAW_RUNS))
def test_runs_per_group_from_the_daily_run_sets_equal_the_raw_events_also_after_a_repeated_backfill(
        november, history, by):
    from tokenfuse.history.migrate import migration_files, statements

    group, where = RAW_RUNS[by]
    raw = dict(history.select(
        f"SELECT {group}, uniqExact(run) FROM usage_events WHERE event_time >= fromUnixTimestamp64Milli({NOV}) "
        f"AND event_time < fromUnixTimestamp64Milli({DEC}) AND ifNull(run, '') != '' AND {where} GROUP BY 1").rows)
    month = Month.parse("2026-11", DEC + 2 * DAY)

    def runs() -> dict[str, int]:
        return {r.group: r.runs for r in chargeback(november, month, Grouping.parse(by)).rows if r.runs}

    assert raw and runs() == raw
    backfill = statements(next(p for p in migration_files() if "runs_by_day" in p.name).read_text())[-1]
    assert backfill.startswith("INSERT INTO runs_by_day")
    history.command("TRUNCATE TABLE runs_by_day")
    history.command(backfill)
    history.command(backfill)  # a migration interrupted and run again: sets count nothing twice
    assert runs() == raw
