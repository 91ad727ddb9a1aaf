"""What a shrink stands on, read from the embedded ClickHouse: the budget scope's spend in its
last complete windows (zeros before its first usage and on idle days) and the recommendation."""

from __future__ import annotations

from tests.history_helpers import chdb_settings, history, runner  # noqa: F401 - fixtures
from tests.unit.test_chargeback import store, usage
from tokenfuse.autopilot.idle import LOOKBACK_WINDOWS, idle_inputs
from tokenfuse.budgets.recommend import Thresholds, evidence
from tokenfuse.history import rows
from tokenfuse.usage.pricing import PriceCatalog

DAY = 86_400_000
TODAY = 1_790_121_600_000  # a UTC midnight
BUDGET = {"id": "search-day", "scope": "team:acme/search", "metric": "cost_micro_usd", "window": "day",
          "timezone": "UTC", "limit": 5_000_000}


def test_the_last_complete_days_with_zeros_and_the_p95_recommendation_once_there_are_seven(history):
    catalog = PriceCatalog.load()
    spends = {10: 3_000_000, 9: 2_000_000, 8: 2_500_000, 7: 2_200_000, 6: 2_100_000, 5: 1_000_000, 3: 900_000,
              1: 400_000}  # days ago -> cost; 4 and 2 days ago: nothing
    events = [usage("search", cost, TODAY - ago * DAY + 3_600_000) for ago, cost in spends.items()]
    events.append(usage("search", 7_777_777, TODAY + 60_000))  # today: not complete, not counted
    store(history, rows.USAGE, [rows.usage_row(e, catalog, 0, n) for n, e in enumerate(events)])

    idle = idle_inputs(runner(history), BUDGET, TODAY + 3_600_000)
    assert idle.window_start == TODAY - DAY
    expected = [spends.get(ago, 0) for ago in range(LOOKBACK_WINDOWS, 0, -1)]
    assert idle.spends == expected and idle.spends[-4:] == [0, 900_000, 0, 400_000]
    assert idle.recommendation == evidence("team:acme/search", [spends.get(ago, 0) for ago in range(10, 0, -1)],
                                           DAY, Thresholds()).option("p95").limit


def test_without_a_week_of_history_there_is_no_recommendation(history):
    catalog = PriceCatalog.load()
    events = [usage("search", 1_000_000, TODAY - ago * DAY) for ago in (2, 1)]
    store(history, rows.USAGE, [rows.usage_row(e, catalog, 0, n) for n, e in enumerate(events)])
    idle = idle_inputs(runner(history), BUDGET, TODAY + 1)
    assert idle.spends[-2:] == [1_000_000, 1_000_000] and sum(idle.spends) == 2_000_000
    assert idle.recommendation is None
