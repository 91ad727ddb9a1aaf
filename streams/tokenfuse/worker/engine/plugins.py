"""The forecast, loop and spike detectors as plug-ins of the accounting stage (settle.Detector).

Each keeps its state per budget in `record.detectors[name]` (compact JSON: the changelog value),
returns alerts and the enforcement entries its budgets' actions ask for (keys `name:budget`),
and stays quiet on a scope an operator acknowledged as expected (`Quiet`, the acks topic).
The logic lives in forecast.py and detectors.py; here it meets budgets and scope records.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from tokenfuse.usage.windows import Window, metric
from tokenfuse.worker.engine.burn_rate import BurnRate
from tokenfuse.worker.engine.deltas import LOOP_SCOPES, Delta
from tokenfuse.worker.engine.detectors import BUCKET_MS, LoopRule, LoopState, SpikeRule, SpikeState, loop_alert, spike_alert
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
    return metric([delta.input_tokens, delta.output_tokens, delta.cached_tokens, delta.cost_micro_usd, delta.events],
                  name)


def entry(action: str, budget: ActiveBudget, window: Window, reason: str, until: int | None = None) -> Enforcement:
    """The enforcement entry of a detector's action: until the window's end unless said."""
    b = budget.budget
    return Enforcement(action, b["id"], b["metric"], metric(window.totals, b["metric"]), b["limit"], window.start,
                       budget.window.until(window) if until is None else until, reason)


def store(record: ScopeRecord, name: str, kept: dict[str, Any]) -> None:
    """A detector's states for the budgets that still apply (none: no key at all)."""
    if kept:
        record.detectors[name] = kept
    else:
        record.detectors.pop(name, None)


def newest_second_from(deltas: Sequence[Delta]) -> int:
    """Index of the first delta of the newest second (deltas in event-time order)."""
    cut = len(deltas) - 1
    while cut > 0 and deltas[cut - 1].second_ms >= deltas[-1].second_ms:
        cut -= 1
    return max(cut, 0)


def complete_until(state: ForecastState, newest_second: int) -> int | None:
    """The end of the newest second the burn rate has seen, if it is complete (a delta of a later
    second has come). Warnings are judged there, on the rate before the newer deltas are added, so
    they depend on event time alone, not on how the worker's batches cut the stream: a partial
    second would look like a dip in the rate, a second ahead like a jump."""
    rate = state.rate
    if not rate.events:
        return None
    seen = rate.last_ms - rate.last_ms % SECOND_MS
    return seen + SECOND_MS if seen < newest_second else None


def no_profiles(scope: str, metric_name: str) -> None:
    return None


class ForecastDetector:
    """A burn rate and early warnings for the budgets that ask for them (`forecast:`). A burn
    rate costs a few exponentials per delta and budget, so budgets without `forecast:` get none;
    GET /totals still shows them a forecast from the window's average (`forecasts`)."""

    name = "forecast"

    def __init__(self, quiet: Quiet | None = None, profiles: Profiles = no_profiles):
        self.acks = quiet or NeverQuiet()
        self.profiles = profiles

    def observe(self, scope: str, record: ScopeRecord, deltas: Sequence[Delta], budgets: Sequence[ActiveBudget],
                now_ms: int) -> Verdict:
        verdict = Verdict()
        states = record.detectors.get(self.name, {})
        kept: dict[str, Any] = {}
        at = deltas[-1].second_ms if deltas else now_ms  # deltas come in event-time order
        cut = newest_second_from(deltas)
        for budget in budgets:
            b = budget.budget
            rule = ForecastRule.of(b)
            if rule is None or budget.window.re_arms:
                continue  # no forecast asked for, or a rolling window: no end to forecast against
            spec, name = budget.window, b["metric"]
            profile = self.profiles(scope, name) if spec.horizon_ms >= PROFILED_FROM_MS else None
            window = record.window(spec, at)
            spent = metric(window.totals, name)
            # The newest second may be partial: the warning is judged before it (see complete_until).
            closed_spent = spent - sum(amount(d, name) for d in deltas[cut:] if window.start <= d.second_ms)
            if budget.id in states:
                state = ForecastState.from_json(states[budget.id])
            else:  # what was spent before these deltas, spread over the window so far
                before = closed_spent - sum(amount(d, name) for d in deltas[:cut] if window.start <= d.second_ms)
                state = ForecastState.start(spec, window.start, before, observed_at(deltas[0].second_ms) if deltas else at)
            quiet = self.acks.quiet(budget.id, "forecast", scope, now_ms)
            event_id = deltas[-1].last_event_id if deltas else ""
            self._observe(state, deltas[:cut], name, profile)
            check = complete_until(state, at) if deltas else now_ms  # the sweep: time moved on without usage
            if check is not None and check > window.start:
                self._warn(verdict, scope, budget, rule, state, window, (check, closed_spent), quiet, profile, event_id)
            self._observe(state, deltas[cut:], name, profile)
            if not quiet:
                self._hold(verdict, budget, rule, state, window)
            kept[budget.id] = state.to_json()
        store(record, self.name, kept)
        return verdict

    @staticmethod
    def _observe(state: ForecastState, deltas: Sequence[Delta], name: str, profile: HourOfWeekProfile | None) -> None:
        observe = state.rate.observe
        for d in deltas:
            observe(observed_at(d.second_ms), deseasonalised(amount(d, name), d.second_ms, profile), d.events)

    def _warn(self, verdict: Verdict, scope: str, budget: ActiveBudget, rule: ForecastRule, state: ForecastState,
              window: Window, check: tuple[int, int], quiet: bool, profile: HourOfWeekProfile | None,
              event_id: str) -> None:
        b, (at, spent) = budget.budget, check
        move = step_warning(state, rule, budget.window, spent, b["limit"], window.start, window.end, at, profile)
        if move is not None and not quiet:
            fc = forecast(state.rate, spent, b["limit"], window.start, window.end, at, profile)
            verdict.alerts.append(forecast_alert(move, b, scope, rule, fc, state.warning.episodes, event_id))

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
            rate = (ForecastState.from_json(states[budget.id]).rate if tracked
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

    def observe(self, scope: str, record: ScopeRecord, deltas: Sequence[Delta], budgets: Sequence[ActiveBudget],
                now_ms: int) -> Verdict:
        verdict = Verdict()
        if not scope.startswith(LOOP_SCOPES):
            return verdict
        states = record.detectors.get(self.name, {})
        kept: dict[str, Any] = {}
        for budget in budgets:
            rule = LoopRule.of(budget.budget)
            if rule is None or not scope.startswith(rule.per + ":"):
                continue
            raw = states.get(budget.id)
            state, until = (LoopState.from_json(raw[0]), raw[1]) if raw else (LoopState(), None)
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
            kept[budget.id] = [state.to_json(), until if until is not None and until > now_ms else None]
        store(record, self.name, kept)
        return verdict


class SpikeDetector:
    """`spike:` budgets: the last minute's spend far above the scope's own baseline. An action
    other than alert holds while the spike lasts."""

    name = "spike"

    def __init__(self, quiet: Quiet | None = None):
        self.acks = quiet or NeverQuiet()

    def observe(self, scope: str, record: ScopeRecord, deltas: Sequence[Delta], budgets: Sequence[ActiveBudget],
                now_ms: int) -> Verdict:
        verdict = Verdict()
        states = record.detectors.get(self.name, {})
        kept: dict[str, Any] = {}
        for budget in budgets:
            rule = SpikeRule.of(budget.budget)
            if rule is None:
                continue
            state = SpikeState.from_json(states[budget.id]) if budget.id in states else SpikeState()
            quiet = self.acks.quiet(budget.id, "spike", scope, now_ms)
            for i, d in enumerate(deltas):
                # Checked once per bucket of the batch: at its last delta.
                last = i + 1 == len(deltas) or deltas[i + 1].second_ms // BUCKET_MS != d.second_ms // BUCKET_MS
                spike = state.observe(rule, d.second_ms, amount(d, budget.budget["metric"]), last)
                if spike is not None and not quiet:
                    verdict.alerts.append(spike_alert(budget.budget, scope, rule, spike, d.second_ms, d.last_event_id,
                                                      now_ms))
            if not deltas:
                state.observe(rule, now_ms, 0)  # time moves on: a spike ends without new usage too
            if state.active and rule.action != "alert" and not quiet:
                window = record.window(budget.window, now_ms)
                verdict.entries[f"{self.name}:{budget.id}"] = entry(
                    rule.action, budget, window, f"spike: spend far above its baseline (budget {budget.id})")
            kept[budget.id] = state.to_json()
        store(record, self.name, kept)
        return verdict
