"""The accounting stage's CPU cost of forecasts and detectors, in process, on demand:

    python -m tests.benchmarks.bench_settle [--events 200000] [--rounds 3]

The same synthetic usage as bench_engine (2000 agents, 20000 runs, request fingerprints) folded
into per-scope deltas in batches of 5000 events, settled by the engine (engine/settle.py) with
the bench_engine budgets, detectors off and on, alternately for `rounds` rounds (so a machine
whose load changes meanwhile affects both alike), each scope's changelog value serialised once
per batch as the account stage writes it. No Kafka: this isolates what the detectors add
to a settle; bench_engine --detectors measures the whole worker.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter, defaultdict

from tests.benchmarks.bench_engine import DETECTOR_BUDGETS, LADDER
from tokenfuse.control.signing import Signer
from tokenfuse.usage.scopes import event_scopes
from tokenfuse.usage.windows import parse_window
from tokenfuse.worker.engine.deltas import DeltaBatch
from tokenfuse.worker.engine.plugins import ForecastDetector, LoopDetector, SpikeDetector
from tokenfuse.worker.engine.record import ScopeRecord
from tokenfuse.worker.engine.rules import BudgetIndex
from tokenfuse.worker.engine.settle import Settler

WINDOWS = "1m,1h,1d,7d,day,month,rolling:60s"
BATCH = 5000


def batches(n: int) -> list[dict[str, list]]:
    """Per batch of events: scope -> its deltas, as the account stage receives them."""
    rng = random.Random(7)
    now = int(time.time() * 1000) - 120_000
    out = []
    for first in range(0, n, BATCH):
        batch = DeltaBatch()
        for i in range(first, min(n, first + BATCH)):
            agent = rng.randrange(2000)
            event = {"event_id": f"e{i}", "event_time": now + i * 100_000 // n, "org": f"org-{agent % 50}",
                     "team": f"team-{agent % 200}", "agent": f"agent-{agent}", "run": f"run-{agent}-{rng.randrange(10)}",
                     "user": None, "model": "gpt-4o", "input_tokens": rng.randrange(100, 5000),
                     "output_tokens": rng.randrange(10, 1000), "cached_tokens": 0, "tags": {},
                     "request_fingerprint": f"fp-{rng.randrange(40)}"}
            batch.add(event, event_scopes(event), event["input_tokens"])
        by_scope = defaultdict(list)
        for delta in sorted(batch.deltas.values(), key=lambda d: d.second_ms):
            by_scope[delta.scope].append(delta)
        out.append(by_scope)
    return out


def settle_all(work: list[dict[str, list]], detectors: bool) -> float:
    specs = {s.name: s for s in (parse_window(w) for w in WINDOWS.split(","))}
    index = BudgetIndex([{"timezone": "UTC", "thresholds": LADDER, **b} for b in DETECTOR_BUDGETS])
    plugins = [ForecastDetector(), LoopDetector(), SpikeDetector()] if detectors else []
    settler = Settler(specs, Counter(), Signer("k", b"k" * 32, "bench"), plugins)
    records: dict[str, ScopeRecord] = {}
    t0 = time.process_time()  # CPU time: other processes on a shared machine do not count
    for by_scope in work:
        for scope, deltas in by_scope.items():
            record = records.get(scope) or ScopeRecord()
            settler.settle(scope, record, [d for d in deltas], index, deltas[-1].second_ms)
            record.to_json()  # the changelog value, once per scope and batch, as the account stage writes it
            records[scope] = record
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = batches(args.events)
    off, on = [], []
    for _ in range(args.rounds):
        off.append(settle_all(work, detectors=False))
        on.append(settle_all(work, detectors=True))
    best_off, best_on = min(off), min(on)
    print(f"settle, thresholds only: {args.events / best_off:,.0f} events per CPU second (best of {args.rounds})")
    print(f"settle, with detectors:  {args.events / best_on:,.0f} events per CPU second")
    print(f"detectors on / off = {best_off / best_on:.2f} (the settle's cost: +{100 * (best_on / best_off - 1):.0f}% time)")


if __name__ == "__main__":
    main()
