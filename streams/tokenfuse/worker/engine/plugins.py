"""The forecast, loop and spike detectors as plug-ins of the accounting stage (settle.Detector).

Each keeps its state per budget in `record.detectors[name]` (an object between changelog writes,
its compact JSON in the changelog value: record.to_json), returns alerts and the enforcement entries its budgets' actions ask for (keys `name:budget`),
and stays quiet on a scope an operator acknowledged as expected (`Quiet`, the acks topic).
The logic lives in forecast.py and detectors.py; here it meets budgets and scope records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from tokenfuse.usage.windows import Window, metric
from tokenfuse.worker.engine.burn_rate import BurnRate
from tokenfuse.worker.engine.deltas import LOOP_SCOPES, Delta
from tokenfuse.worker.engine.detectors import BUCKET_MS, PROBE_BUCKETS, LoopRule, LoopState, SpikeRule, SpikeState, loop_alert, spike_alert
from tokenfuse.worker.engine.forecast import (SECOND_MS, ForecastRule, ForecastState, deseasonalised, forecast,
                                              forecast_alert, observed_at, step_warning)
from tokenfuse.worker.engine.record import Enforcement, ScopeRecord
from tokenfuse.worker.engine.rules import ActiveBudget
from tokenfuse.worker.engine.seasonal import HourOfWeekProfile
from tokenfuse.worker.engine.settle import Verdict

Profiles = Callable[[str, str], "HourOfWeekProfile | None"]  # (scope, metric) -> profile
PROFILED_FROM_MS = 86_400_000  # windows this long or longer use a history profile when one exists


class Quiet(Protocol):
    def quiet(self, budget_id: str, kind: str, scope: str, now_ms: int) -> bool: ...


class NeverQuiet:
    def quiet(self, budget_id: str, kind: str, scope: str, now_ms: int) -> bool:
        return False


def amount(delta: Delta, name: str) -> int:
    if name == "total_tokens":  # the common metrics without building a totals list per delta
        return delta.input_tokens + delta.output_tokens
    if name == "cost_micro_usd":
        return delta.cost_micro_usd
    return metric([delta.input_tokens, delta.output_tokens, delta.cached_tokens, delta.cost_micro_usd, delta.events],
                  name)


def entry(action: str, budget: ActiveBudget, window: Window, reason: str, until: int | None = None) -> Enforcement:
    """The enforcement entry of a detector's action: until the window's end unless said."""
    b = budget.budget
    return Enforcement(action, b["id"], b["metric"], metric(window.totals, b["metric"]), b["limit"], window.start,
                       budget.window.until(window) if until is None else until, reason)


class RuleCache:
    """A budget's detector rule, parsed once per budget record instead of on every settle (a
    dataclass built per scope and batch was a visible share of the detectors' cost). Holding
    the budget dict keeps its id from being reused while cached."""

    def __init__(self, parse: Callable[[dict[str, Any]], Any]):
        self.parse = parse
        self.cache: dict[int, tuple[dict[str, Any], Any]] = {}

    def of(self, budget: dict[str, Any]) -> Any:
        hit = self.cache.get(id(budget))
        if hit is not None and hit[0] is budget:
            return hit[1]
        if len(self.cache) > 10_000:  # budgets replaced many times over
            self.cache.clear()
        rule = self.parse(budget)
        self.cache[id(budget)] = (budget, rule)
        return rule


def loaded(raw: Any, cls: Any) -> Any:
    """A detector state as an object: kept as one in the record between changelog writes
    (record.to_json writes its JSON), decoded only when it comes from the changelog."""
    return raw if isinstance(raw, cls) else cls.from_json(raw)


@dataclass
class LoopHold:
    """The loop detector's state for one budget and scope, and until when its action holds."""

    state: LoopState
    until: int | None = None

    def to_json(self) -> list[Any]:
        return [self.state.to_json(), self.until]

    @classmethod
    def from_json(cls, data: list[Any]) -> "LoopHold":
        return cls(LoopState.from_json(data[0]), data[1])


def store(record: ScopeRecord, name: str, kept: dict[str, Any]) -> None:
    """A detector's states for the budgets that still apply (none: no key at all)."""
    if kept:
        record.detectors[name] = kept
    else:
        record.detectors.pop(name, None)


def no_profiles(scope: str, metric_name: str) -> None:
    return None


@dataclass
class Warn:
    """Judges one budget's early warning on one scope at points of event time (ForecastDetector)."""

    verdict: Verdict
    scope: str
    budget: ActiveBudget
    rule: ForecastRule
    window: Window
    quiet: bool
    profile: HourOfWeekProfile | None

    def judge(self, state: ForecastState, at: int, spent: int, event_id: str) -> None:
        b, w = self.budget.budget, self.window
        move = step_warning(state, self.rule, self.budget.window, spent, b["limit"], w.start, w.end, at, self.profile)
        if move is not None and not self.quiet:
            fc = forecast(state.rate, spent, b["limit"], w.start, w.end, at, self.profile)
            self.verdict.alerts.append(forecast_alert(move, b, self.scope, self.rule, fc, state.warning.episodes,
                                                      event_id))


class ForecastDetector:
    """A burn rate and early warnings for the budgets that ask for them (`forecast:`). A burn
    rate costs a few exponentials per delta and budget, so budgets without `forecast:` get none;
    GET /totals still shows them a forecast from the window's average (`forecasts`)."""

    name = "forecast"

    def __init__(self, quiet: Quiet | None = None, profiles: Profiles = no_profiles):
        self.acks = quiet or NeverQuiet()
        self.profiles = profiles
        self.rules = RuleCache(ForecastRule.of)

    def observe(self, scope: str, record: ScopeRecord, deltas: Sequence[Delta], budgets: Sequence[ActiveBudget],
                now_ms: int) -> Verdict:
        verdict = Verdict()
        states = record.detectors.get(self.name, {})
        kept: dict[str, Any] = {}
        at = deltas[-1].second_ms if deltas else now_ms  # deltas come in event-time order
        for budget in budgets:
            b = budget.budget
            rule = self.rules.of(b)
            if rule is None or budget.window.re_arms:
                continue  # no forecast asked for, or a rolling window: no end to forecast against
            spec, name = budget.window, b["metric"]
            profile = self.profiles(scope, name) if spec.horizon_ms >= PROFILED_FROM_MS else None
            window = record.window(spec, at)
            spent = metric(window.totals, name)
            amounts = [amount(d, name) for d in deltas]
            before = spent - sum(a for d, a in zip(deltas, amounts) if window.start <= d.second_ms)
            if budget.id in states:
                state = loaded(states[budget.id], ForecastState)
            else:  # what was spent before these deltas, spread over the window so far
                state = ForecastState.start(spec, window.start, before, observed_at(deltas[0].second_ms) if deltas else at)
            quiet = self.acks.quiet(budget.id, "forecast", scope, now_ms)
            warn = Warn(verdict, scope, budget, rule, window, quiet, profile)
            if deltas:
                self._feed(state, deltas, amounts, before, warn, profile)
            elif state.warning.window_start == window.start:
                # The sweep: time moved on without usage, within the window the warning watches (a
                # later window at the worker's clock is no reason to reset it: a worker catching up
                # after a restart still has usage of the watched window to add, and would number
                # the warning's episodes again from 1).
                warn.judge(state, now_ms, spent, "")
            if not quiet:
                self._hold(verdict, budget, rule, state, window)
            kept[budget.id] = state
        store(record, self.name, kept)
        return verdict

    @staticmethod
    def _feed(state: ForecastState, deltas: Sequence[Delta], amounts: list[int], spent: int, warn: "Warn",
              profile: HourOfWeekProfile | None) -> None:
        """Feed the deltas to the burn rate, judging the warning at the end of every second of
        the window once it is complete (a delta of a later second comes), on the rate and spend
        as they were then. So a warning depends on event time alone, not on how the worker's
        batches cut the stream: a partial second would look like a dip in the rate, spend of
        later seconds like a jump, and a batch spanning the warning and the breach (a worker
        catching up) would skip the warning."""
        rate, window_start = state.rate, warn.window.start
        seen = rate.last_ms - rate.last_ms % SECOND_MS if rate.events else None
        event_id = ""
        for d, spend in zip(deltas, amounts):
            if seen is not None and d.second_ms > seen >= window_start:
                warn.judge(state, seen + SECOND_MS, spent, event_id)
            rate.observe(observed_at(d.second_ms), deseasonalised(spend, d.second_ms, profile), d.events)
            if d.second_ms >= window_start:
                spent += spend
            if seen is None or d.second_ms > seen:
                seen = d.second_ms
            event_id = d.last_event_id

    def _hold(self, verdict: Verdict, budget: ActiveBudget, rule: ForecastRule, state: ForecastState,
              window: Window) -> None:
        """`action: warn` or `throttle`: the scope stays at that rung while the warning is up."""
        if state.warning.active and rule.action != "alert" and state.warning.window_start == window.start:
            verdict.entries[f"{self.name}:{budget.id}"] = entry(
                rule.action, budget, window, f"forecast: budget {budget.id} is forecast to be reached in this window")

    def forecasts(self, record: ScopeRecord, budgets: Sequence[ActiveBudget], now_ms: int) -> dict[str, dict[str, Any]]:
        """Per budget with a discrete window on this scope, its forecast (GET /totals): from its
        burn rate, or for a budget without `forecast:` from the window's average so far."""
        states = record.detectors.get(self.name, {})
        at = max(now_ms, record.newest_ms)
        out = {}
        for budget in budgets:
            if budget.window.re_arms:
                continue
            b, window = budget.budget, record.window(budget.window, at)
            spent = metric(window.totals, b["metric"])
            tracked = budget.id in states
            rate = (loaded(states[budget.id], ForecastState).rate if tracked
                    else BurnRate.start(budget.window, window.start, spent, at))
            profile = (self.profiles("", b["metric"]) if tracked and budget.window.horizon_ms >= PROFILED_FROM_MS
                       else None)
            fc = forecast(rate, spent, b["limit"], window.start, window.end, at, profile)
            out[budget.id] = {**fc.to_json(), "method": "burn rate" if tracked else "window average"}
        return out


class LoopDetector:
    """`loop:` budgets on run or agent scopes: one request fingerprint repeated `repeats` times
    within `within`. An action other than alert holds until the budget's window ends."""

    name = "loop"

    def __init__(self, quiet: Quiet | None = None):
        self.acks = quiet or NeverQuiet()
        self.rules = RuleCache(LoopRule.of)

    def observe(self, scope: str, record: ScopeRecord, deltas: Sequence[Delta], budgets: Sequence[ActiveBudget],
                now_ms: int) -> Verdict:
        verdict = Verdict()
        if not scope.startswith(LOOP_SCOPES):
            return verdict
        states = record.detectors.get(self.name, {})
        kept: dict[str, Any] = {}
        for budget in budgets:
            rule = self.rules.of(budget.budget)
            if rule is None or not scope.startswith(rule.per + ":"):
                continue
            hold = loaded(states[budget.id], LoopHold) if budget.id in states else LoopHold(LoopState())
            state, until = hold.state, hold.until
            if deltas:
                state.forget(rule, deltas[0].second_ms)
            for d in deltas:
                for fp, calls in (d.fingerprints or {}).items():
                    if state.observe(rule, fp, d.second_ms, calls) and not self.acks.quiet(budget.id, "loop", scope,
                                                                                         now_ms):
                        verdict.alerts.append(loop_alert(budget.budget, scope, rule, fp, d.second_ms, d.last_event_id,
                                                         now_ms))
                        if rule.action != "alert":
                            until = budget.window.until(record.window(budget.window, d.second_ms))
            if until is not None and until > now_ms:
                window = record.window(budget.window, now_ms)
                verdict.entries[f"{self.name}:{budget.id}"] = entry(
                    rule.action, budget, window, f"loop: one request repeated {rule.repeats} times within "
                                                 f"{rule.within_ms // 1000}s (budget {budget.id})", until)
            hold.until = until if until is not None and until > now_ms else None
            kept[budget.id] = hold
        store(record, self.name, kept)
        return verdict


class SpikeDetector:
    """`spike:` budgets: the last minute's spend far above the scope's own baseline. An action
    other than alert holds while the spike lasts."""

    name = "spike"

    def __init__(self, quiet: Quiet | None = None):
        self.acks = quiet or NeverQuiet()
        self.rules = RuleCache(SpikeRule.of)

    def observe(self, scope: str, record: ScopeRecord, deltas: Sequence[Delta], budgets: Sequence[ActiveBudget],
                now_ms: int) -> Verdict:
        verdict = Verdict()
        states = record.detectors.get(self.name, {})
        kept: dict[str, Any] = {}
        for budget in budgets:
            rule = self.rules.of(budget.budget)
            if rule is None:
                continue
            state = loaded(states[budget.id], SpikeState) if budget.id in states else SpikeState()
            quiet = self.acks.quiet(budget.id, "spike", scope, now_ms)
            for i, d in enumerate(deltas):
                # Checked once per bucket of the batch: at its last delta.
                last = i + 1 == len(deltas) or deltas[i + 1].second_ms // BUCKET_MS != d.second_ms // BUCKET_MS
                spike = state.observe(rule, d.second_ms, amount(d, budget.budget["metric"]), last)
                if spike is not None and not quiet:
                    verdict.alerts.append(spike_alert(budget.budget, scope, rule, spike, d.second_ms, d.last_event_id,
                                                      now_ms))
            # The sweep: a spike whose scope has been silent for a minute at the worker's clock no
            # longer holds its action. Its state stays in event time (closing buckets up to the
            # worker's clock would drop the usage a worker catching up after a restart still adds).
            lapsed = not deltas and now_ms // BUCKET_MS - state.bucket >= PROBE_BUCKETS
            if state.active and rule.action != "alert" and not quiet and not lapsed:
                window = record.window(budget.window, now_ms)
                verdict.entries[f"{self.name}:{budget.id}"] = entry(
                    rule.action, budget, window, f"spike: spend far above its baseline (budget {budget.id})")
            kept[budget.id] = state
        store(record, self.name, kept)
        return verdict
