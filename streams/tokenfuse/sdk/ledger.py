"""Local enforcement: this runtime's own spend, counted per scope and window at record(), held
against the budgets of the scopes it alone reports (a run; kinds named in `local_scopes`).

Pure Python, no Kafka: `set_budgets()` is fed by the budgets follower (sdk/budget_feed.py), and
`count()` / `check()` are called on the agent's thread. A check therefore sees every call recorded
before it, with no pipeline in between: a run that crosses its limit is refused at its next call.

Counts start when a budget first watches a scope (this runtime cannot know what it spent before)
and survive budget changes (a re-created budget keeps the count). Windows are the worker's own
window kinds (usage/windows.py), so bounds and rolling buckets agree.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from tokenfuse.errors import BudgetExceeded
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.usage.windows import Window, WindowSpec, add_totals, metric
from tokenfuse.worker.engine.rules import DEFAULT_THROTTLE_DELAY_MS, ActiveBudget, BudgetIndex, enforcement, spend_at

log = logging.getLogger(__name__)

SWEEP_EVERY_MS = 10_000
RUN_ONLY = frozenset({"run"})


@dataclass(slots=True)
class WindowCount:
    """Spend of one scope in one window kind, kept in that kind's own state (usage/windows.py:
    the worker's code, so both agree on bounds and buckets)."""

    spec: WindowSpec
    state: Any = None
    last_ms: int = 0
    # A kind with discrete windows keeps each one's totals list in its state: the one added to
    # last is added to directly while the time stays in it (record() pays for this path).
    hot: Window | None = None

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = self.spec.new_state()

    def add(self, ts: int, vec: list[int]) -> None:
        """Add a totals vector ([input, output, cached, cost, events]) at time ts."""
        if ts > self.last_ms:
            self.last_ms = ts
        hot = self.hot
        if hot is not None and hot.start <= ts < hot.end:
            add_totals(hot.totals, vec)
            return
        if self.spec.add(self.state, ts, vec, self.last_ms) and not self.spec.re_arms:
            self.hot = self.spec.window_at(self.state, ts)

    def current(self, now_ms: int) -> Window:
        return self.spec.window_at(self.state, now_ms)

    def expired(self, now_ms: int) -> bool:
        """Nothing counted is in the window holding now_ms any more."""
        return self.last_ms + self.spec.horizon_ms <= now_ms


@dataclass(frozen=True, slots=True)
class Rule:
    """One budget watching one scope, and the count it reads. `acts_at` / `blocks_at`: the spend
    at which its first warn/throttle/block threshold and its first block threshold are reached
    (None: it has none), so a check below them costs one comparison."""

    scope: str
    budget: ActiveBudget
    count: WindowCount
    acts_at: int | None
    blocks_at: int | None

    @classmethod
    def of(cls, scope: str, budget: ActiveBudget, count: WindowCount) -> "Rule":
        b = budget.budget
        return cls(scope, budget, count, spend_at(b, ("warn", "throttle", "block")), spend_at(b, ("block",)))


@dataclass(frozen=True, slots=True)
class Watch:
    """What watches one scope key: its rules, and the distinct counts they read (budgets on the
    same window share one count, added to once per event)."""

    rules: tuple[Rule, ...] = ()
    counts: tuple[WindowCount, ...] = ()
    needs_cost: bool = False


@dataclass(frozen=True, slots=True)
class Bound:
    """What a call declares it may spend at most (None: unknown), for refusing it up front."""

    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    def amount(self, metric_name: str, catalog: PriceCatalog | None, provider: str) -> int:
        i, o = self.input_tokens or 0, self.output_tokens or 0
        if metric_name == "cost_micro_usd":
            if catalog is None or self.model is None:
                return 0
            return catalog.cost({"model": self.model, "provider": provider, "input_tokens": i,
                                 "output_tokens": o, "cached_tokens": 0}).micro_usd
        return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}[metric_name]


class LocalLedger:
    """Counts and decisions for the locally enforced scopes. Thread-safe (one lock, held briefly)."""

    def __init__(self, local_kinds: Iterable[str] = ("run",), max_scopes: int = 100_000,
                 load_catalog: Callable[[], PriceCatalog] = PriceCatalog.load):
        self.local_kinds = frozenset(local_kinds)
        self.max_scopes = max_scopes
        self._load_catalog = load_catalog
        self.catalog: PriceCatalog | None = None
        self.watched: frozenset[str] = frozenset()  # kinds some local budget targets: record() skips the rest
        self._budgets: list[Mapping[str, Any]] = []  # the local ones, as the topic has them
        self._index = BudgetIndex([])
        self._watches: dict[str, Watch] = {}  # scope key -> what watches it (a cache, rebuilt freely)
        self._counts: dict[tuple[str, WindowSpec], WindowCount] = {}
        self._warned: set[tuple[str, str, str]] = set()
        self._next_sweep = 0
        self._lock = threading.Lock()

    # -- budgets ---------------------------------------------------------------------------------

    def set_budgets(self, budgets: Iterable[Mapping[str, Any]]) -> None:
        """Replace the budgets (every budget of the topic; those on other kinds are ignored)."""
        local = [b for b in budgets if b["scope"].partition(":")[0] in self.local_kinds]
        index = BudgetIndex(local)
        for budget_id, problem in index.rejected.items():
            log.warning("tokenfuse: budget %s not enforced locally: %s", budget_id, problem)
        if self.catalog is None and any(b["metric"] == "cost_micro_usd" for b in local):
            self.catalog = self._load_catalog()  # on the feed's thread, never on a caller's
        with self._lock:
            self._budgets, self._index = local, index
            self._watches = {}
            watched = frozenset(b["scope"].partition(":")[0] for b in local if b["id"] not in index.rejected)
            self.watched = RUN_ONLY if watched == RUN_ONLY else watched

    def _watch(self, scope: str) -> Watch:
        watch = self._watches.get(scope)
        if watch is None:
            budgets = self._index.for_scope(scope)
            rules = tuple(Rule.of(scope, b, self._count_for(scope, b.window)) for b in budgets)
            counts = tuple({id(r.count): r.count for r in rules}.values())
            watch = self._watches[scope] = Watch(rules, counts, any(b.budget["metric"] == "cost_micro_usd"
                                                                    for b in budgets))
        return watch

    def _count_for(self, scope: str, spec: WindowSpec) -> WindowCount:
        count = self._counts.get((scope, spec))
        if count is None:
            count = self._counts[(scope, spec)] = WindowCount(spec)
        return count

    # -- record() --------------------------------------------------------------------------------

    def count(self, event: Mapping[str, Any], now_ms: int) -> None:
        """Add a recorded event to the counts of its watched scopes (the caller checks `watched`)."""
        kinds = self.watched
        if kinds is RUN_ONLY:  # the common case, kept short: record() pays for this
            run = event["run"]
            scopes = ("run:" + run,) if run else ()
        else:
            scopes = local_scopes(event, kinds)
        cost = None
        with self._lock:
            for scope in scopes:
                watch = self._watches.get(scope) or self._watch(scope)
                if watch.needs_cost and cost is None:
                    cost = self._cost(event)
                vec = [event["input_tokens"], event["output_tokens"], event["cached_tokens"], cost or 0, 1]
                for count in watch.counts:
                    count.add(now_ms, vec)
            if now_ms >= self._next_sweep:
                self._sweep(now_ms)

    def _cost(self, event: Mapping[str, Any]) -> int:
        """What the worker counts: the larger of the reported and the catalog cost (pricing.py)."""
        if self.catalog is None:
            return event.get("cost_micro_usd") or 0
        return self.catalog.cost(dict(event)).micro_usd

    def _sweep(self, now_ms: int) -> None:
        """Forget windows that are over, and past max_scopes the scopes idle the longest."""
        self._next_sweep = now_ms + SWEEP_EVERY_MS
        self._counts = {k: c for k, c in self._counts.items() if not c.expired(now_ms)}
        if len(self._counts) > self.max_scopes:
            keep = sorted(self._counts.items(), key=lambda kc: -kc[1].last_ms)[:self.max_scopes * 9 // 10]
            log.warning("tokenfuse: local enforcement forgets %d idle scope windows (local_max_scopes=%d)",
                        len(self._counts) - len(keep), self.max_scopes)
            self._counts = dict(keep)
        self._watches = {}
        self._index = BudgetIndex(self._budgets)  # it caches every scope asked about: start afresh
        self._warned = set()

    # -- check() ---------------------------------------------------------------------------------

    def check(self, call: Mapping[str, Any], now_ms: int, bound: Bound | None = None) -> int:
        """Raise BudgetExceeded if a local scope of this call is blocked, or if the call's declared
        bound would take it past a block threshold; else the throttle delay in ms (0: go ahead).
        `call` has the attribution of an event (org, team, agent, run, user, model, tags)."""
        delay, warnings = 0, []
        with self._lock:
            for scope in local_scopes(call, self.watched):
                for rule in self._watch(scope).rules:
                    state, spent, window = self._decide(rule, now_ms, bound, call.get("provider") or "unknown")
                    if state == "throttle":
                        delay = DEFAULT_THROTTLE_DELAY_MS
                    elif state == "warn":
                        warnings.append((rule, spent, window))
        for rule, spent, window in warnings:
            self._warn(rule, spent, window)
        return delay

    def _decide(self, rule: Rule, now_ms: int, bound: Bound | None, provider: str) -> tuple[str, int, Window]:
        b = rule.budget.budget
        window = rule.count.current(now_ms)
        spent = metric(window.totals, b["metric"])
        state = "allow" if rule.acts_at is None or spent < rule.acts_at else enforcement(b, spent)
        most = 0
        if state != "block" and bound is not None and rule.blocks_at is not None:
            most = bound.amount(b["metric"], self.catalog, provider)
            if spent + most > rule.blocks_at:  # reaching the limit exactly is still within it
                state = "block"
        if state == "block":
            reason = f"local count: {spent} of {b['limit']} {b['metric']} in window {b['window']}"
            if most:
                reason += f"; this call may spend up to {most} more"
            raise BudgetExceeded(rule.scope, budget_id=b["id"], spent=spent, limit=b["limit"],
                                 until_ms=rule.count.spec.until(window), reason=reason)
        return state, spent, window

    def _warn(self, rule: Rule, spent: int, window: Window) -> None:
        # Once per window; for a rolling window (no discrete windows) once per sweep.
        key = (rule.budget.id, rule.scope, rule.count.spec.fired_key(window))
        if key not in self._warned:
            self._warned.add(key)
            b = rule.budget.budget
            log.warning("tokenfuse: %s: budget %s: local count %d of %d %s in window %s", rule.scope,
                        b["id"], spent, b["limit"], b["metric"], b["window"])

    def spent(self, scope: str, budget_id: str, now_ms: int) -> int | None:
        """The local count a budget reads for a scope (None: no such budget there), for inspection."""
        with self._lock:
            for rule in self._watch(scope).rules:
                if rule.budget.id == budget_id:
                    return metric(rule.count.current(now_ms).totals, rule.budget.budget["metric"])
        return None


def local_scopes(attrs: Mapping[str, Any], kinds: frozenset[str]) -> list[str]:
    """The scope keys of an event (or a call) whose kind is in `kinds`."""
    if not kinds:
        return []
    out = []
    run = attrs.get("run")
    if run and "run" in kinds:
        out.append("run:" + run)
    if kinds == RUN_ONLY:
        return out
    for kind in ("agent", "user", "model", "org"):
        value = attrs.get(kind)
        if value and kind in kinds:
            out.append(f"{kind}:{value}")
    if "team" in kinds:
        out.append(f"team:{attrs['org']}/{attrs['team']}")
    if "global" in kinds:
        out.append("global")
    if "tag" in kinds:
        out.extend(f"tag:{k}={v}" for k, v in (attrs.get("tags") or {}).items())
    return out
