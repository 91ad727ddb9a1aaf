"""Recommendation and chargeback latency on the embedded engine, on demand:
    python -m tests.benchmarks.bench_plan [--rows 10000000] [--data DIR]

Loads `--rows` usage events over the last 30 days (40 teams, 2,000 agents, 50,000 runs of 25 per
agent; generated
inside ClickHouse through the rollup views, as tests/benchmarks/bench_history.py does), then
measures in one run (median of 5 after a warm-up), each against a baseline computing the same
numbers from the raw usage_events table:
  - budgets recommend --scope team:* --window day --lookback 30d (query + percentiles, margin,
    backtests, parent fit), and for every agent (agent:*);
  - report chargeback by team over the 30 days (rollups + runs from the per-day run sets of
    runs_by_day + alerts, blocks, budgets, shared cost).
Goal: <= 1 s each. `--data DIR` keeps the loaded events there and reuses them on the next run
(the load takes minutes; event times are then relative to that first run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests.benchmarks.bench_history import DAY, bulk_load, latency_ms
from tokenfuse.budgets.recommender import Request, recommend
from tokenfuse.config import Settings
from tokenfuse.history.chargeback import Grouping, Month, chargeback
from tokenfuse.history.client import History
from tokenfuse.history.migrate import migrate
from tokenfuse.history.shared_cost import Rule

# The baselines: the same per-window and per-team figures straight from the raw events.
RAW_WINDOWS = ("SELECT concat('team:', org, '/', team) AS scope, toStartOfDay(event_time) AS day, "
               "sum(cost_micro_usd) FROM usage_events WHERE event_time >= fromUnixTimestamp64Milli({start:Int64}) "
               "AND event_time < fromUnixTimestamp64Milli({end:Int64}) GROUP BY scope, day")
RAW_AGENT_WINDOWS = RAW_WINDOWS.replace("concat('team:', org, '/', team)", "concat('agent:', agent)")
RAW_CHARGEBACK = ("SELECT concat('team:', org, '/', team) AS grp, count(), sum(input_tokens), sum(output_tokens), "
                  "sum(cached_tokens), sum(cost_micro_usd), uniqExactIf(cityHash64(run), ifNull(run, '') != '') "
                  "FROM usage_events WHERE event_time >= fromUnixTimestamp64Milli({start:Int64}) "
                  "AND event_time < fromUnixTimestamp64Milli({end:Int64}) GROUP BY grp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="usage events stored")
    parser.add_argument("--data", type=Path, help="a folder to keep the events in and reuse")
    args = parser.parse_args()
    history = History(Settings(data_dir=args.data or Path(tempfile.mkdtemp(prefix="bench-plan-"))), "bench")
    migrate(history)
    stored = history.select("SELECT count() FROM usage_events").rows[0][0]
    if stored < args.rows:
        now_ms = int(time.time() * 1000)
        print(f"loading {args.rows - stored:,} events over the last 30 days...", flush=True)
        bulk_load(history, args.rows - stored, now_ms)
        for table in ("usage_by_hour", "usage_by_day", "runs_by_day"):
            history.command(f"OPTIMIZE TABLE {table} FINAL")  # as background merges would have by now
        stored = args.rows
    now_ms = int(history.select("SELECT toUnixTimestamp64Milli(max(event_time)) FROM usage_events").rows[0][0]) + 1

    def run(query, parameters=None):
        result = history.select(query, parameters)
        return {"columns": result.columns, "rows": result.rows}

    teams = Request(scope="team:*", window="day", metric="cost_usd", lookback="30d", parent_limit="5000")
    agents = Request(scope="agent:*", window="day", metric="cost_usd", lookback="30d", parent="none")
    start = (now_ms - 30 * DAY) // DAY * DAY
    month = Month(start, start + 31 * DAY, now_ms, "last 30 days")
    rules = [Rule("team:acme/team-0", "proportional")]
    raw = {"start": start, "end": now_ms}
    figures = [
        ("recommend team:* (40 teams, day, 30d)", lambda: recommend(run, teams, {}, now_ms),
         "baseline: team-day sums from raw events", lambda: history.select(RAW_WINDOWS, raw)),
        ("recommend agent:* (2,000 agents, day, 30d)", lambda: recommend(run, agents, {}, now_ms),
         "baseline: agent-day sums from raw events", lambda: history.select(RAW_AGENT_WINDOWS, raw)),
        ("chargeback by team (30 days, shared cost)", lambda: chargeback(run, month, Grouping("team"), rules),
         "baseline: team totals + runs from raw events", lambda: history.select(RAW_CHARGEBACK, raw)),
    ]
    print(f"latency over {stored:,} events (median of 5; goal <= 1000 ms):")
    for name, fn, base_name, base in figures:
        ms, base_ms = latency_ms(fn), latency_ms(base)
        verdict = "ok" if ms <= 1000 else "OVER GOAL"
        print(f"  {name:44s} {ms:8.1f} ms  {verdict}")
        print(f"  {base_name:44s} {base_ms:8.1f} ms  ratio {ms / base_ms:.3f}")
    history.close()


if __name__ == "__main__":
    main()
