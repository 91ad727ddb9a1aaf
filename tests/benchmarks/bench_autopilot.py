"""Autopilot vs static budgets over simulated months, on demand (pure logic, no broker):
    python -m tests.benchmarks.bench_autopilot [--days 60] [--teams 24] [--seed 7]

Synthetic hourly spend for `--teams` teams of one org: steady, growing (1-2.5 % a day,
compounding), seasonal (weekly cycle) and one runaway (a loop at 20x its spend on some days, which
the worker's loop detector flags). Daily budgets (calendar day, spend in micro-USD) start for
both arms from the first week, as `budgets recommend` would set them (p95 x margin), with
the org's budget (the children's parent) at 1.5 x their sum: the org cap.

- static: the week-one budgets stay.
- autopilot: the same budgets and org cap, driven through the autopilot's own decision code
  (tokenfuse.autopilot.pilot, the object the role runs) in simulated time. Every hour a team's
  forecast is a burn-rate projection of its day (spend so far / hours elapsed x 24); when it
  says the limit is reached before midnight, a forecast alert goes to the autopilot (at most
  one per hour, as the worker re-warns after a limit change). Policy per team: floor = half,
  cap = 6 x its week-one budget, max step = 1 x, cooldown 1 h, parent = the org, raise to the
  projection + 15 % until midnight, shrink after 3 idle days (< 50 %) toward the p95
  recommendation of its last 30 days; mode auto.

A hard block: a team whose spend reaches its limit during a day (it spends nothing more until
midnight). Reported: blocked team-days of the growing teams (goal: >= 80 % fewer with the
autopilot), of all teams, spend lost to blocks, the largest sum of team limits and of daily
spend against the org cap (never above it), and the runaway's raises (never one).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field

from tokenfuse.autopilot.book import Book
from tokenfuse.autopilot.pilot import Pilot
from tokenfuse.autopilot.policy import Policy, Raise, Rule, Shrink
from tokenfuse.budgets.recommend import Thresholds, evidence

HOUR, DAY = 3_600_000, 86_400_000
START = 1_767_225_600_000  # 2026-01-01 00:00 UTC
# Share of a day's spend in each UTC hour: office hours weigh most.
PROFILE = [0.5] * 7 + [1.5] * 11 + [0.7] * 6
PROFILE = [w / sum(PROFILE) for w in PROFILE]
RUNAWAY_DAYS = (17, 31, 46, 58)
RUNAWAY_FROM_HOUR = 10


@dataclass
class Team:
    name: str
    kind: str  # steady | growing | seasonal | runaway
    base: float  # micro-USD a day at the start
    growth: float = 0.0  # per day, compounding
    history: list[int] = field(default_factory=list)  # what it spent each day (blocks included)

    def demand(self, day: int, hour: int, rng: random.Random) -> float:
        level = self.base * (1 + self.growth) ** day
        if self.kind == "seasonal":
            level *= 1 + 0.6 * math.sin(2 * math.pi * day / 7)
        noise = rng.lognormvariate(0, 0.25)
        runaway = 20 if self.kind == "runaway" and day in RUNAWAY_DAYS and hour >= RUNAWAY_FROM_HOUR else 1
        return level * PROFILE[hour] * noise * runaway


def teams(n: int, rng: random.Random) -> list[Team]:
    kinds = ["steady", "growing", "seasonal"]
    out = [Team(f"t{i:02d}", kinds[i % 3], rng.uniform(20, 200) * 1e6,
                growth=rng.uniform(0.01, 0.025) if i % 3 == 1 else 0.0) for i in range(n - 1)]
    return out + [Team("runaway", "runaway", 80e6)]


def budget(budget_id: str, scope: str, limit: int) -> dict:
    return {"id": budget_id, "scope": scope, "metric": "cost_micro_usd", "window": "day", "timezone": "UTC",
            "limit": limit, "thresholds": [{"percent": 100, "action": "block"}], "description": "",
            "updated_at": START}


@dataclass
class Arm:
    name: str
    limits: dict[str, int]
    pilot: Pilot | None = None
    blocks: dict[str, int] = field(default_factory=dict)  # team -> blocked days
    lost: float = 0.0
    max_limits_share: float = 0.0
    max_spend_share: float = 0.0
    runaway_raises: int = 0
    decisions: dict[str, int] = field(default_factory=dict)

    def limit(self, team: str) -> int:
        return self.pilot.book.budgets[team]["limit"] if self.pilot else self.limits[team]


def simulate(days: int, n_teams: int, seed: int) -> tuple[list[Team], Arm, Arm, int]:
    rng = random.Random(seed)
    org = teams(n_teams, rng)
    week = [[sum(t.demand(d, h, rng) for h in range(24)) for d in range(7)] for t in org]
    initial = {t.name: evidence(t.name, [int(v) for v in w], DAY, Thresholds()).option("p95").limit
               for t, w in zip(org, week)}
    cap = int(1.5 * sum(initial.values()))
    rules = tuple(Rule(budget=name, floor=limit // 2, cap=6 * limit, max_step=limit, cooldown_ms=HOUR, mode="auto",
                       parent="org", raise_=Raise(15), shrink=Shrink(3, 50)) for name, limit in initial.items())
    book = Book(budgets={"org": budget("org", "org:acme", cap),
                         **{name: budget(name, f"team:acme/{name}", limit) for name, limit in initial.items()}})
    static, auto = Arm("static", dict(initial)), Arm("autopilot", {}, Pilot(Policy(rules), book))
    demand_rng = random.Random(seed + 1)
    for day in range(7, days):
        demands = {t.name: [t.demand(day, h, demand_rng) for h in range(24)] for t in org}
        for arm in (static, auto):
            run_day(arm, org, day, demands, cap)
    return org, static, auto, cap


def run_day(arm: Arm, org: list[Team], day: int, demands: dict[str, list[float]], cap: int) -> None:
    day_start = START + day * DAY
    spent = {t.name: 0.0 for t in org}
    blocked: set[str] = set()
    for hour in range(24):
        now = day_start + hour * HOUR
        if arm.pilot:
            take(arm, arm.pilot.tick(now))
            if hour == 0:
                idle(arm, org, day, now)
            if hour == RUNAWAY_FROM_HOUR and day in RUNAWAY_DAYS:  # the loop detector's alert
                take(arm, arm.pilot.alert({"kind": "loop", "alert_id": f"runaway|loop|{day}", "budget_id": "runaway",
                                           "scope": "team:acme/runaway"}, now + 60_000))
        for team in org:
            if team.name in blocked:
                arm.lost += demands[team.name][hour]
                continue
            want = demands[team.name][hour]
            limit = arm.limit(team.name)
            if spent[team.name] + want >= limit:
                arm.lost += spent[team.name] + want - limit
                spent[team.name] = limit
                blocked.add(team.name)
                arm.blocks[team.name] = arm.blocks.get(team.name, 0) + 1
            else:
                spent[team.name] += want
            if arm.pilot and team.name not in blocked and hour < 23:
                forecast(arm, team.name, spent[team.name], hour, day_start)
        limits = sum(arm.limit(t.name) for t in org)
        arm.max_limits_share = max(arm.max_limits_share, limits / cap)
    arm.max_spend_share = max(arm.max_spend_share, sum(spent.values()) / cap)
    if arm.pilot:
        for team in org:
            team.history.append(int(spent[team.name]))


def forecast(arm: Arm, team: str, spent: float, hour: int, day_start: int) -> None:
    """The burn-rate projection at the end of `hour`; a forecast alert when it reaches the limit."""
    projected = int(spent / (hour + 1) * 24)
    if projected < arm.limit(team):
        return
    now = day_start + (hour + 1) * HOUR - 1
    alert = {"kind": "forecast", "alert_id": f"{team}|{day_start}|forecast|{hour}", "budget_id": team,
             "scope": f"team:acme/{team}", "window_start": day_start, "window_end": day_start + DAY,
             "projected": projected, "eta_p50": None, "burn_rate_per_hour": spent / (hour + 1)}
    take(arm, arm.pilot.alert(alert, now))


def idle(arm: Arm, org: list[Team], day: int, now: int) -> None:
    for team in org:
        if len(team.history) >= 3:
            last = team.history[-30:]
            recommendation = evidence(team.name, last, DAY, Thresholds()).option("p95").limit if len(last) >= 7 else None
            take(arm, arm.pilot.idle(team.name, team.history[-3:], recommendation, now - DAY, now))


def take(arm: Arm, outcomes) -> None:
    for outcome in outcomes:
        d = outcome.decision
        arm.decisions[f"{d.kind} {d.status}"] = arm.decisions.get(f"{d.kind} {d.status}", 0) + 1
        if d.budget_id == "runaway" and d.kind == "raise" and d.status == "applied":
            arm.runaway_raises += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--teams", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    org, static, auto, cap = simulate(args.days, args.teams, args.seed)
    growing = [t.name for t in org if t.kind == "growing"]
    print(f"{args.days} days ({args.days - 7} simulated after the first week), {len(org)} teams "
          f"({len(growing)} growing, 1 runaway), org cap ${cap / 1e6:,.0f}/day; "
          f"{time.perf_counter() - started:.1f} s")
    rows = [("", "static", "autopilot")]
    for label, pick in (("blocked team-days, growing teams", lambda a: sum(a.blocks.get(t, 0) for t in growing)),
                        ("blocked team-days, all teams", lambda a: sum(a.blocks.values())),
                        ("blocked days, runaway", lambda a: a.blocks.get("runaway", 0)),
                        ("spend lost to blocks (USD)", lambda a: f"{a.lost / 1e6:,.0f}"),
                        ("max sum of limits / org cap", lambda a: f"{a.max_limits_share:.2f}"),
                        ("max daily spend / org cap", lambda a: f"{a.max_spend_share:.2f}"),
                        ("raises applied to the runaway", lambda a: a.runaway_raises)):
        rows.append((label, str(pick(static)), str(pick(auto))))
    width = max(len(r[0]) for r in rows)
    for row in rows:
        print(f"{row[0]:<{width}}  {row[1]:>10}  {row[2]:>10}")
    before = sum(static.blocks.get(t, 0) for t in growing)
    after = sum(auto.blocks.get(t, 0) for t in growing)
    print(f"growing teams' hard blocks: {100 * (before - after) / max(before, 1):.0f} % fewer with the autopilot "
          f"(goal >= 80 %)")
    print("autopilot decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(auto.decisions.items())))
    assert static.max_limits_share <= 1 and auto.max_limits_share <= 1, "the org cap was exceeded"
    assert auto.runaway_raises == 0, "the runaway was raised"


if __name__ == "__main__":
    main()
