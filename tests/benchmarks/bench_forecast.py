"""Forecasts and detectors against synthetic spend, on demand:

    python -m tests.benchmarks.bench_forecast [--runs 50] [--shapes ramp,step]

Replays seeded runs of each shape (forecast_shapes.py, detector_runs.py) in event time through
the pure engine (per-second deltas into worker/engine/forecast.py and detectors.py) and, in the
same run, through a baseline that projects linearly from the window's average (LiteLLM's
"projected spend"). Prints per shape: early-warning lead time before the real breach (median,
p5, share of breaching runs warned in time: lead >= 30 min or >= 20% of the time from the
window's start to the breach), false warnings on runs that never breach, the ETA's error once
20% of the window has passed (median |ETA - breach| / time to breach) and how often the p10-p90
band held the breach; then loop and spike precision, recall and detection delay.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

from tests.benchmarks import detector_runs
from tests.benchmarks.forecast_shapes import LIMIT, SHAPES, Run
from tokenfuse.usage.windows import Calendar, Tumbling, WindowSpec
from tokenfuse.worker.engine.burn_rate import window_size_ms
from tokenfuse.worker.engine.forecast import (SECOND_MS, ForecastRule, ForecastState, deseasonalised, forecast,
                                              observed_at, ready, step_warning)

WARN_BEFORE_MS = 30 * 60_000
RULE = ForecastRule(WARN_BEFORE_MS, "alert")
AT_FRACTION = 0.2


@dataclass
class Outcome:
    breach: int | None
    first_warning: int | None = None  # before the breach
    warnings: int = 0
    clears: int = 0
    up_at_end: bool = False
    band_at_20: tuple[int | None, int | None, int | None] | None = None


def spec_of(run: Run) -> WindowSpec:
    return Calendar("month") if run.window_ms > 7 * 86_400_000 else Tumbling(run.window_ms)


def deltas(run: Run) -> list[tuple[int, int]]:
    """The run's events folded per second, as the ingest stage does."""
    out: list[tuple[int, int]] = []
    for t, cost in run.events:
        second = t - t % 1000
        if out and out[-1][0] == second:
            out[-1] = (second, out[-1][1] + cost)
        else:
            out.append((second, cost))
    return out


def replay_engine(run: Run) -> Outcome:
    spec, end = spec_of(run), run.window_ms
    state, spent, out = ForecastState.start(spec, 0), 0, Outcome(run.breach_ms)
    at = int(AT_FRACTION * end)
    for t, cost in deltas(run):
        if out.band_at_20 is None and t >= at:
            fc = forecast(state.rate, spent, LIMIT, 0, end, at, run.profile)
            out.band_at_20 = (fc.eta_p10, fc.eta_p50, fc.eta_p90)
        state.rate.observe(observed_at(t), deseasonalised(cost, t, run.profile))
        spent += cost
        if spent >= LIMIT:
            break
        # Judged as of the second's end, as the worker does once a later second has come.
        move = step_warning(state, RULE, spec, spent, LIMIT, 0, end, t + SECOND_MS, run.profile)
        if move == "forecast":
            out.warnings += 1
            out.first_warning = t + SECOND_MS if out.first_warning is None else out.first_warning
        elif move == "forecast_cleared":
            out.clears += 1
    out.up_at_end = state.warning.active
    return out


def replay_baseline(run: Run) -> Outcome:
    """LiteLLM's projection: the window's average rate so far, extended to the window's end."""
    spec, end = spec_of(run), run.window_ms
    spent, events, out, up = 0, 0, Outcome(run.breach_ms), False
    at = int(AT_FRACTION * end)
    probe = ForecastState.start(spec, 0)  # only for the same evidence gate as the engine
    for t, cost in deltas(run):
        if out.band_at_20 is None and t >= at:
            eta = at + (LIMIT - spent) * at / spent if spent else None
            eta = int(eta) if eta is not None and eta < end else None
            out.band_at_20 = (None, eta, None)
        spent, events = spent + cost, events + 1
        probe.rate.events = events
        if spent >= LIMIT:
            break
        eta = t + (LIMIT - spent) * t / spent if t > 0 else None
        warn = eta is not None and eta < end and eta - t <= WARN_BEFORE_MS and ready(probe.rate, spec, t)
        if warn and not up:
            out.warnings += 1
            out.first_warning = t if out.first_warning is None else out.first_warning
        elif up and not warn:
            out.clears += 1
        up = warn
    out.up_at_end = up
    return out


@dataclass
class Figures:
    leads_min: list[float] = field(default_factory=list)
    timely: int = 0
    breaching: int = 0
    quiet: int = 0
    false_warnings: int = 0
    errors: list[float] = field(default_factory=list)
    covered: int = 0
    banded: int = 0

    def add(self, run: Run, out: Outcome) -> None:
        if out.breach is None:
            self.quiet += 1
            self.false_warnings += out.warnings > 0
        else:
            self.breaching += 1
            lead = out.breach - out.first_warning if out.first_warning is not None else 0
            self.leads_min.append(lead / 60_000)
            self.timely += lead > 0 and (lead >= 30 * 60_000 or lead >= 0.2 * out.breach)
        at = AT_FRACTION * run.window_ms
        if out.breach is not None and out.breach > at and out.band_at_20 is not None:
            p10, p50, p90 = out.band_at_20
            self.errors.append(abs(p50 - out.breach) / (out.breach - at) if p50 is not None else float("inf"))
            if p10 is not None or p90 is not None:
                self.banded += 1
                self.covered += (p10 or 0) <= out.breach <= (p90 if p90 is not None else float("inf"))

    def row(self) -> list[str]:
        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:.0f}%" if b else "-"
        leads = sorted(self.leads_min)
        return [
            f"{statistics.median(leads):.0f}" if leads else "-",
            f"{leads[int(0.05 * (len(leads) - 1))]:.0f}" if leads else "-",
            pct(self.timely, self.breaching), pct(self.false_warnings, self.quiet),
            f"{100 * statistics.median(self.errors):.1f}%" if self.errors else "-",
            pct(self.covered, self.banded) if self.banded else "n/a",
        ]


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def bench_forecasts(runs: int, shapes: list[str] | None) -> None:
    rows = []
    for make in SHAPES:
        if shapes and make.__name__ not in shapes:
            continue
        engine, baseline = Figures(), Figures()
        for seed in range(runs):
            run = make(seed)
            engine.add(run, replay_engine(run))
            baseline.add(run, replay_baseline(run))
        name = make(0).shape
        span = f"{window_size_ms(spec_of(make(0))) // 3_600_000}h"
        label = f"({engine.breaching} breach / {engine.quiet} not)"
        rows.append([name, span, label, "tokenfuse"] + engine.row())
        rows.append(["", "", "", "window average"] + baseline.row())
    print(f"\nForecasts: {runs} seeded runs per shape, warn_before 30m, ETA figures at 20% of the window")
    print_table(["shape", "window", "runs", "method", "lead p50 (min)", "lead p5 (min)", "warned in time",
                 "false warnings", "ETA error", "band coverage"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--shapes", help="comma-separated shape names (default: all)")
    parser.add_argument("--skip-detectors", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    bench_forecasts(args.runs, args.shapes.split(",") if args.shapes else None)
    if not args.skip_detectors:
        detector_runs.report(args.runs, print_table)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
