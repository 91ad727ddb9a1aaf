"""Loop and spike detection against synthetic runs, for bench_forecast (seeded, event time).

Loops: half-hour agent runs of calls with distinct request fingerprints, plus what must not
count as a loop: retries (a call repeated once or twice within seconds) and polling (one request
every 16-30 s). Half the runs get an injected loop: one fingerprint repeated 8-30 times, 1-10 s
apart. A detection on the loop's fingerprint is a true positive; its delay is the number of
repeated calls until it. Baseline: a budget threshold alone detects no loop.

Spikes: three hours of a team's bursty spend (a cluster of ~5 calls every 4 s on average,
log-normal costs) with a slow benign drift (x1.5); half the runs get a spike of 3-8x the call rate for 5-15 minutes after the first
1.5 h. A detection between the spike's start and a minute after its end is a true positive.
Baseline: the last minute's spend against 3x the average of the current hour window so far (a
window-average projection, as LiteLLM's).
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Callable

from tokenfuse.worker.engine.detectors import LoopRule, LoopState, SpikeRule, SpikeState

LOOP_RULE = LoopRule(repeats=5, within_ms=60_000, action="block", per="run")
SPIKE_RULE = SpikeRule(factor=3.0, baseline_ms=3_600_000, action="alert")
HOUR = 3_600_000


def loop_run(seed: int) -> tuple[list[tuple[int, str]], tuple[str, int] | None]:
    """(calls as (time, fingerprint), (loop fingerprint, loop start) or None)."""
    rng = random.Random(seed)
    calls: list[tuple[int, str]] = []
    t, n = 0.0, 0
    while t < 1_800_000:
        t += rng.expovariate(1 / 8000)
        n += 1
        calls.append((int(t), f"call-{n}"))
        if rng.random() < 0.05:  # a retry or two
            for k in range(rng.randint(1, 2)):
                calls.append((int(t) + 3000 * (k + 1), f"call-{n}"))
    if rng.random() < 0.5:
        every = rng.uniform(16_000, 30_000)
        calls += [(int(i * every), "poll-job") for i in range(int(1_800_000 / every))]
    loop = None
    if seed % 2 == 0:
        start, spacing = rng.uniform(60_000, 1_500_000), rng.uniform(1000, 10_000)
        loop = ("stuck", int(start))
        calls += [(int(start + i * spacing * rng.uniform(0.7, 1.3)), "stuck") for i in range(rng.randint(8, 30))]
    return sorted(calls), loop


def spike_run(seed: int) -> tuple[list[tuple[int, int]], tuple[int, int, float] | None]:
    """(per-second deltas (time, cost), (spike start, end, magnitude) or None)."""
    rng = random.Random(seed)
    spike = None
    if seed % 2 == 0:
        start = rng.uniform(1.5 * HOUR, 2.5 * HOUR)
        spike = (int(start), int(start + rng.uniform(300_000, 900_000)), rng.uniform(3, 8))

    def intensity(t: float) -> float:
        drift = 1 + 0.5 * t / (3 * HOUR)
        return drift * (spike[2] if spike and spike[0] <= t < spike[1] else 1.0)

    events: dict[int, int] = {}
    t = 0.0
    while t < 3 * HOUR:
        t += rng.expovariate(1 / 4000 * 8 * 1.5)  # clusters at the top rate, thinned below
        if rng.random() * 8 * 1.5 < intensity(t):
            for _ in range(1 + int(rng.expovariate(1 / 4))):
                at = int(t + rng.uniform(0, 20_000))
                events[at - at % 1000] = events.get(at - at % 1000, 0) + int(rng.lognormvariate(8, 1))
    return sorted(events.items()), spike


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    positives: int = 0
    found: int = 0
    delays: list[float] | None = None

    def row(self, unit: str) -> list[str]:
        precision = f"{self.tp / (self.tp + self.fp):.2f}" if self.tp + self.fp else "-"
        recall = f"{self.found / self.positives:.2f}" if self.positives else "-"
        delays = sorted(self.delays or [])
        delay = (f"{statistics.median(delays):.0f} / {delays[-1]:.0f} {unit}" if delays else "-")
        return [precision, recall, delay]


def detect_loops(seed: int, tally: Tally) -> None:
    calls, loop = loop_run(seed)
    state, seen_loop, found = LoopState(), 0, False
    tally.positives += loop is not None
    for t, fp in calls:
        seen_loop += fp == "stuck"
        state.forget(LOOP_RULE, t)
        if state.observe(LOOP_RULE, fp, t):
            if fp == "stuck" and loop is not None:
                tally.tp += 1
                if not found:
                    found = True
                    tally.found += 1
                    tally.delays = (tally.delays or []) + [seen_loop]
            else:
                tally.fp += 1


def detect_spikes(seed: int, engine: Tally, baseline: Tally, by_size: dict[str, Tally]) -> None:
    deltas, spike = spike_run(seed)
    state = SpikeState()
    hits: list[tuple[Tally, int]] = []
    window_spent, window_start, last_minute = 0, 0, []
    for t, cost in deltas:
        if state.observe(SPIKE_RULE, t, cost):
            hits.append((engine, t))
        if t - window_start >= HOUR:
            window_start, window_spent, = t - t % HOUR, 0
        window_spent += cost
        last_minute = [(s, c) for s, c in last_minute if s > t - 60_000] + [(t, cost)]
        elapsed = max(t - window_start, 60_000)
        if sum(c for _, c in last_minute) >= 3 * window_spent * 60_000 / elapsed and t - window_start >= 600_000:
            if not any(tally is baseline and t - at < 300_000 for tally, at in hits):
                hits.append((baseline, t))
    size = None if spike is None else "3-4x" if spike[2] < 4 else "4-8x"
    for tally in (engine, baseline):
        tally.positives += spike is not None
        first = True
        for who, at in hits:
            if who is not tally:
                continue
            if spike is not None and spike[0] <= at <= spike[1] + 60_000:
                tally.tp += 1
                if first:
                    first = False
                    tally.found += 1
                    tally.delays = (tally.delays or []) + [(at - spike[0]) / 1000]
                    if tally is engine:
                        by_size[size].found += 1
                        by_size[size].delays = (by_size[size].delays or []) + [(at - spike[0]) / 1000]
            else:
                tally.fp += 1
    if size is not None:
        by_size[size].positives += 1


def report(runs: int, print_table: Callable[[list[str], list[list[str]]], None]) -> None:
    loops = Tally()
    for seed in range(2 * runs):
        detect_loops(seed, loops)
    engine, baseline = Tally(), Tally()
    by_size = {"3-4x": Tally(), "4-8x": Tally()}
    for seed in range(2 * runs):
        detect_spikes(seed, engine, baseline, by_size)
    within = sum(d <= 120 for d in engine.delays or [])
    print(f"\nLoops: {2 * runs} runs ({loops.positives} with a loop), repeats 5 within 60s; "
          f"spikes: {2 * runs} runs ({engine.positives} with a spike), factor 3, baseline 1h")
    print_table(["detector", "method", "precision", "recall", "delay median / max"], [
        ["loop", "tokenfuse"] + loops.row("calls"),
        ["", "threshold only"] + ["-", "0.00", "-"],
        ["spike", "tokenfuse"] + engine.row("s"),
        ["", "window average"] + baseline.row("s"),
        ["spike 3-4x", "tokenfuse"] + ["", by_size["3-4x"].row("s")[1], by_size["3-4x"].row("s")[2]],
        ["spike 4-8x", "tokenfuse"] + ["", by_size["4-8x"].row("s")[1], by_size["4-8x"].row("s")[2]],
    ])
    print(f"spikes caught within 2 minutes of event time: {within} of {engine.positives}")
