"""Runaway detectors, pure: loops (one request repeated) and spikes (spend far above its own
baseline). Their states are compact JSON lists kept in a scope record (a changelog value).

Loops: an agent stuck in a loop sends the same request again and again. The SDK puts a hash of
the normalised request in each UsageEvent (`request_fingerprint`); `LoopState` keeps, per run or
agent, the times of the recent fingerprints and reports the call that makes one fingerprint reach
`repeats` within `within`. It fires once per episode: a fingerprint must fall silent for `within`
before it can fire again. Retries of a failed call (two or three repeats) stay far below the
default of 5.

Spikes: EWMA mean and variance of the scope's spend per minute (sampled every 10 s) over the
`baseline` horizon (half-life = baseline / 2), against the spend of the last minute. Measuring
the variance on whole minutes, not on the 10 s buckets, keeps bursts that span several buckets
one random event. A spike is the last minute
reaching `factor` times the baseline AND standing out of its noise (4 standard deviations): a
bursty scope's ordinary bursts do not fire. Buckets during a spike enter the baseline winsorised
(capped at mean + 3 sd), so a spike does not become its own baseline quickly, while a lasting
step change is absorbed over a few half-lives. It clears when the last minute falls back below
halfway between the baseline and the spike threshold.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

LOOP_ACTIONS = ("alert", "throttle", "block")
SPIKE_ACTIONS = ("alert", "warn", "throttle", "block")
LOOP_PER = ("run", "agent")
DEFAULT_LOOP = {"repeats": 5, "within_ms": 60_000, "action": "alert", "per": "run"}
DEFAULT_SPIKE = {"factor": 3.0, "baseline_ms": 3_600_000, "action": "alert"}
MAX_FINGERPRINTS = 64  # distinct recent fingerprints kept per run or agent
BUCKET_MS = 10_000
PROBE_BUCKETS = 6  # the last minute
SPIKE_Z = 4.0
WINSOR_Z = 3.0


@dataclass(frozen=True)
class LoopRule:
    repeats: int
    within_ms: int
    action: str
    per: str

    @classmethod
    def of(cls, budget: Mapping[str, Any]) -> "LoopRule | None":
        rule = budget.get("loop")
        return cls(rule["repeats"], rule["within_ms"], rule["action"], rule["per"]) if rule else None


@dataclass
class LoopState:
    """Recent call times per fingerprint (ascending, at most `repeats`), and the fingerprints
    whose loop has fired and not yet fallen silent. `quiet_from` is at most the oldest
    fingerprint's last call: `forget` scans nothing before it can drop one (it ran on every
    settle and was the loop detector's main cost, scanning up to 64 fingerprints each time)."""

    seen: dict[str, list[int]] = field(default_factory=dict)
    fired: list[str] = field(default_factory=list)
    quiet_from: int = 0

    def observe(self, rule: LoopRule, fingerprint: str, t_ms: int, count: int = 1) -> bool:
        """Record `count` calls with `fingerprint` at `t_ms`; True if this makes it a loop
        (the first time in an episode). Call `forget` as time moves on."""
        times = self.seen.setdefault(fingerprint, [])
        if not times:  # a new fingerprint may be the oldest; calls of known ones only make theirs newer
            self.quiet_from = min(self.quiet_from, t_ms) if len(self.seen) > 1 else t_ms
        for _ in range(min(count, rule.repeats)):
            bisect.insort(times, t_ms)
        del times[:-rule.repeats]
        if len(self.seen) > MAX_FINGERPRINTS:  # the least recently seen go first
            for fp in sorted(self.seen, key=lambda f: self.seen[f][-1])[:len(self.seen) - MAX_FINGERPRINTS]:
                del self.seen[fp]
            self.fired = [fp for fp in self.fired if fp in self.seen]
        looping = len(times) >= rule.repeats and times[-1] - times[0] < rule.within_ms
        if looping and fingerprint not in self.fired:
            self.fired.append(fingerprint)
            return True
        return False

    def forget(self, rule: LoopRule, now_ms: int) -> None:
        """Drop fingerprints silent for `within` before `now_ms`: their episode ends."""
        horizon = now_ms - rule.within_ms
        if self.quiet_from > horizon:
            return
        for fp in [fp for fp, times in self.seen.items() if times[-1] <= horizon]:
            del self.seen[fp]
        self.fired = [fp for fp in self.fired if fp in self.seen]
        self.quiet_from = min((times[-1] for times in self.seen.values()), default=0)

    def to_json(self) -> list[Any]:
        return [self.seen, self.fired, self.quiet_from]

    @classmethod
    def from_json(cls, data: list[Any]) -> "LoopState":
        return cls(*data)  # [seen, fired] before quiet_from: 0 scans at the next forget


@dataclass(frozen=True)
class SpikeRule:
    factor: float
    baseline_ms: int
    action: str

    @classmethod
    def of(cls, budget: Mapping[str, Any]) -> "SpikeRule | None":
        rule = budget.get("spike")
        return cls(rule["factor"], rule["baseline_ms"], rule["action"]) if rule else None

    @property
    def alpha(self) -> float:
        """EWMA weight of one bucket for a half-life of baseline / 2."""
        return -math.expm1(-math.log(2) * BUCKET_MS / (self.baseline_ms / 2))


@dataclass(frozen=True)
class Spike:
    """What a spike alert reports: the last minute's rate against the baseline rate."""

    factor: float
    rate_per_hour: float
    baseline_per_hour: float


@dataclass
class SpikeState:
    bucket: int = -1  # index (t // BUCKET_MS) of the open bucket
    recent: list[float] = field(default_factory=list)  # the open bucket last, PROBE_BUCKETS at most
    mean: float = 0.0  # EWMA of the last minute's spend, taken as each bucket closes
    var: float = 0.0  # and of its squared deviation
    closed: int = 0  # buckets that entered the baseline
    active: bool = False

    def observe(self, rule: SpikeRule, t_ms: int, amount: float, check: bool = True) -> Spike | None:
        """Add spend at `t_ms`; a Spike when this starts one (once per episode). `check=False`
        skips the check (the caller checks once its deltas of this bucket are all in)."""
        index = t_ms // BUCKET_MS
        if self.bucket < 0:
            self.bucket, self.recent = index, [0.0]
        if index > self.bucket:
            self._close(rule, index - self.bucket)
            self.bucket = index
        back = self.bucket - index
        if back < len(self.recent):  # a late delta still within the last minute counts there
            self.recent[-1 - back] += amount
        return self.check(rule) if check else None

    def check(self, rule: SpikeRule) -> Spike | None:
        """Start or end the episode from the last minute's spend; a Spike when one starts."""
        probe, expected = sum(self.recent), self.mean
        if not self.active:
            warm = self.closed * BUCKET_MS >= rule.baseline_ms / 2 and self.mean > 0
            if warm and probe >= rule.factor * expected and probe >= expected + SPIKE_Z * math.sqrt(self.var):
                self.active = True
                hour = 3_600_000 / (PROBE_BUCKETS * BUCKET_MS)
                return Spike(probe / expected, probe * hour, expected * hour)
        elif probe < (1 + rule.factor) / 2 * expected:
            self.active = False
        return None

    def _close(self, rule: SpikeRule, steps: int) -> None:
        """Close the open bucket and `steps - 1` empty ones after it into the baseline."""
        horizon = int(6 * rule.baseline_ms / BUCKET_MS)  # beyond that the old baseline is gone anyway
        for _ in range(min(steps, horizon)):
            self._learn(rule, sum(self.recent))
            self.recent.append(0.0)
            del self.recent[:-PROBE_BUCKETS]
        if steps > horizon:
            self.recent = [0.0]

    def _learn(self, rule: SpikeRule, value: float) -> None:
        if self.active:
            value = min(value, self.mean + WINSOR_Z * math.sqrt(self.var))
        self.closed += 1
        alpha = max(rule.alpha, 1 / self.closed)  # the first buckets: a plain running mean
        delta = value - self.mean
        self.mean += alpha * delta
        self.var = (1 - alpha) * (self.var + alpha * delta * delta)

    def to_json(self) -> list[Any]:
        return [self.bucket, self.recent, self.mean, self.var, self.closed, self.active]

    @classmethod
    def from_json(cls, data: list[Any]) -> "SpikeState":
        return cls(*data)


def loop_alert(budget: Mapping[str, Any], scope: str, rule: LoopRule, fingerprint: str, t_ms: int,
               event_id: str, now_ms: int) -> dict[str, Any]:
    """A `loop` Alert for a run or agent scope (deterministic id, see forecast.forecast_alert)."""
    return {
        "alert_id": f"{budget['id']}|{scope}|loop|{fingerprint}|{t_ms}", "kind": "loop", "scope": scope,
        "budget_id": budget["id"], "action": rule.action, "metric": budget["metric"], "event_id": event_id or None,
        "created_at": now_ms, "fingerprint": fingerprint, "repeats": rule.repeats,
        "message": f"{scope} repeated one request {rule.repeats} times within {rule.within_ms // 1000}s "
                   f"(fingerprint {fingerprint[:12]}): a loop (budget {budget['id']}, action {rule.action})",
    }


def spike_alert(budget: Mapping[str, Any], scope: str, rule: SpikeRule, spike: Spike, t_ms: int,
                event_id: str, now_ms: int) -> dict[str, Any]:
    """A `spike` Alert with the factor and the baseline."""
    return {
        "alert_id": f"{budget['id']}|{scope}|spike|{t_ms - t_ms % BUCKET_MS}", "kind": "spike", "scope": scope,
        "budget_id": budget["id"], "action": rule.action, "metric": budget["metric"], "event_id": event_id or None,
        "created_at": now_ms, "factor": round(spike.factor, 3), "baseline_per_hour": spike.baseline_per_hour,
        "burn_rate_per_hour": spike.rate_per_hour,
        "message": f"{scope} spends {spike.factor:.1f}x its baseline ({spike.rate_per_hour:,.0f} vs "
                   f"{spike.baseline_per_hour:,.0f} {budget['metric']}/h over the last {rule.baseline_ms // 60_000} min)",
    }
