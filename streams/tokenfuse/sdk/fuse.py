"""`Fuse`: what an agent runtime holds. It reports usage (record) and honours the kill switch (check).

    fuse = Fuse.from_env()                       # TOKENFUSE_AGENT=bot-7 TOKENFUSE_CONTROL_KEY=...
    with fuse.run("run-42"):                     # or: async with fuse.run("run-42")
        fuse.check(model="gpt-4o", max_tokens=1024)  # raises BudgetExceeded when a scope is blocked
        ... call the model ...
        fuse.record("gpt-4o", input_tokens=812, output_tokens=95)

Two sources decide a check: the kill switch (states the worker publishes, for every scope) and
the local ledger (this runtime's own count, for run budgets and the `local_scopes` kinds, decided
at the call). The most severe wins.
"""

from __future__ import annotations

import atexit
import contextvars
import time
import uuid
from typing import Any, Callable, Mapping

from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError, InvalidUsage
from tokenfuse.sdk.budget_feed import BudgetFeed
from tokenfuse.sdk.killswitch import KillSwitch
from tokenfuse.sdk.leases import LeaseBook
from tokenfuse.sdk.ledger import Bound, LocalLedger
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.sdk.outage import Outage
from tokenfuse.sdk.reporter import FlushResult, Reporter
from tokenfuse.usage.scopes import MAX_TAGS, field_problem, tags_problem

# The run of the current thread or asyncio task, set by `with fuse.run(...)`.
_current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("tokenfuse_run", default=None)
_MODELS_REMEMBERED = 1000  # model names already checked, so record() and check() stay dict lookups


class Fuse:
    def __init__(self, settings: Settings, options: FuseOptions, *,
                 on_block: Callable[[dict[str, Any]], None] | None = None,
                 on_release: Callable[[str], None] | None = None):
        if settings.control_key is None:
            raise ConfigError("invalid settings:", [
                "TOKENFUSE_CONTROL_KEY: required, the kill switch verifies every control state with it"])
        problems = [p for p in (field_problem("org", options.org), field_problem("team", options.team),
                                field_problem("agent", options.agent), field_problem("provider", options.provider),
                                options.user is not None and field_problem("user", options.user),
                                tags_problem(options.tags)) if p]
        if problems:
            raise ConfigError("invalid Fuse options (docs/sdk.md, 'What ids may hold'):", problems)
        self.settings, self.options = settings, options
        self._models: set[str] = set()
        self._org, self._team, self._agent = options.org, options.team, options.agent
        self._user, self._tags, self._provider = options.user, dict(options.tags), options.provider
        spool_dir = options.spool_dir or settings.data_dir / "spool" / options.agent
        self._outage = Outage()  # one "Kafka unreachable" / "reachable again" line for both clients
        self._reporter = Reporter(settings, options, spool_dir, self._outage)
        self.kill_switch = KillSwitch(
            settings, options, settings.control_verifier(),
            on_block=on_block, on_release=on_release, outage=self._outage)
        self.ledger = LocalLedger(options.local_kinds, options.local_max_scopes)
        # Shared scopes' budgets spent within leases the worker grants (docs/leases.md).
        self.leases = LeaseBook(settings, options, self._outage) if options.leases else None
        receivers = ([self.ledger.set_budgets] if options.local_budgets else []) + (
            [self.leases.set_budgets] if self.leases is not None else [])
        self.budgets = BudgetFeed(settings, receivers, self._outage) if receivers else None
        self._closed: FlushResult | None = None
        atexit.register(self.close)

    @classmethod
    def from_env(cls, **options: Any) -> "Fuse":
        """Settings and options from TOKENFUSE_* variables; keyword arguments override options."""
        return cls(Settings.from_env(), FuseOptions.from_env(**options))

    # -- reporting ---------------------------------------------------------------------------------

    def record(self, model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
               cost_micro_usd: int | None = None, provider: str | None = None, user: str | None = None,
               tags: Mapping[str, str] | None = None, run: str | None = None,
               request_fingerprint: str | None = None) -> None:
        """Report one LLM call's usage. Returns at once (about a microsecond); the event gets its
        event_id and is encoded and sent on a background thread. Event time is now.
        `request_fingerprint` (tokenfuse.sdk.fingerprint; the integrations set it) lets the
        worker catch a run repeating one request in a loop."""
        if (input_tokens | output_tokens | cached_tokens) < 0:
            raise ValueError("token counts must not be negative")
        self._check_call(model, user, tags, run, provider)
        event = {
            "event_time": time.time_ns() // 1_000_000,
            "org": self._org, "team": self._team, "agent": self._agent,
            "run": run or _current_run.get(), "user": user or self._user,
            "model": model, "provider": provider or self._provider,
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cached_tokens": cached_tokens,
            "cost_micro_usd": cost_micro_usd, "tags": {**self._tags, **tags} if tags else self._tags,
            "request_fingerprint": request_fingerprint,
        }
        if self.ledger.watched:  # a budget is enforced locally: count this call now, for the next check
            self.ledger.count(event, event["event_time"])
        if self.leases is not None and self.leases.active:  # spent within a lease: counted against it
            self.leases.count(event, event["event_time"])
        self._reporter.submit(event)

    # -- the kill switch ---------------------------------------------------------------------------

    def check(self, model: str | None = None, user: str | None = None,
              tags: Mapping[str, str] | None = None, run: str | None = None,
              max_tokens: int | None = None, input_tokens: int | None = None) -> int:
        """Raise BudgetExceeded if this call's scopes (global, org, team, agent, run, user, model,
        tags) are blocked, by the worker or by the local count; else return the throttle delay in
        ms to honour before the call. `max_tokens` (the request's output limit) and `input_tokens`
        (an estimate of the prompt) bound what the call may spend: a call that would take a
        locally enforced scope past its block threshold is refused before it is made."""
        self._check_call(model, user, tags, run)
        run, user = run or _current_run.get(), user or self._user
        tags = {**self._tags, **tags} if tags else self._tags
        delay = self.kill_switch.check(run, user, model, tags)
        bound = Bound(model, input_tokens, max_tokens) if max_tokens or input_tokens else None
        if self.leases is not None and self.leases.active:
            self.leases.check(bound, self._provider)
        if self.ledger.watched:
            call = {"org": self._org, "team": self._team, "agent": self._agent, "run": run, "user": user,
                    "model": model, "tags": tags, "provider": self._provider}
            delay = max(delay, self.ledger.check(call, time.time_ns() // 1_000_000, bound))
        return delay

    @property
    def current_run(self) -> str | None:
        """The run of the calling thread or task (set by `with fuse.run(...)`), if any."""
        return _current_run.get()

    def run(self, run_id: str | None = None) -> "Run":
        """A run context: records and checks inside it carry this run id (a new uuid if None)."""
        if run_id is not None:
            _require("run", run_id)
        return Run(self, run_id or str(uuid.uuid4()))

    def _check_call(self, model: str | None, user: str | None, tags: Mapping[str, str] | None,
                    run: str | None, provider: str | None = None) -> None:
        """Raise InvalidUsage for a value the pipeline would refuse. Known models cost a set lookup."""
        if model is not None and model not in self._models:
            _require("model", model)
            if len(self._models) >= _MODELS_REMEMBERED:
                self._models.clear()
            self._models.add(model)
        if user is not None:
            _require("user", user)
        if run is not None:
            _require("run", run)
        if provider is not None:
            _require("provider", provider)
        if tags:
            problem = tags_problem(tags)
            if problem is None and len(self._tags.keys() | tags.keys()) > MAX_TAGS:
                problem = f"{len(self._tags.keys() | tags.keys())} tags with this runtime's defaults, more than {MAX_TAGS}"
            if problem:
                raise InvalidUsage("tags", tags, problem)

    # -- lifecycle ---------------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the control topic and the budgets (if followed) present at start are read."""
        deadline = time.monotonic() + timeout
        ready = self.kill_switch.wait_ready(timeout)
        return ready and (self.budgets is None or self.budgets.wait_ready(max(0.0, deadline - time.monotonic())))

    @property
    def stats(self) -> dict[str, int]:
        """Counters: delivered, failed (then spooled), spooled, replayed, invalid, dropped (spool
        full), rejected_control (unsigned/forged control states), broker_outages and
        connection_errors (logged once per outage, counted here)."""
        spool = self._reporter.spool
        return {**self._reporter.stats, "dropped": spool.dropped,
                "rejected_control": self.kill_switch.rejected, "broker_outages": self._outage.outages,
                "connection_errors": self._outage.connection_errors}

    def flush(self, timeout: float = 10.0) -> FlushResult:
        """Wait up to `timeout` s until everything recorded so far, and whatever the spool holds,
        is acknowledged by the broker. Returns what is still undelivered (true if nothing)."""
        return self._reporter.flush(timeout)

    def close(self) -> FlushResult:
        """Deliver what is pending within close_timeout_s, spool the rest, stop the background
        threads, log one line saying what is left undelivered, and return it. Called at
        interpreter exit too."""
        if self._closed is not None:
            return self._closed
        atexit.unregister(self.close)
        self._closed = self._reporter.close()
        self.kill_switch.close()
        if self.leases is not None:
            self.leases.close()
        if self.budgets is not None:
            self.budgets.close()
        return self._closed

    def __enter__(self) -> "Fuse":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> "Fuse":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _require(field: str, value: object) -> None:
    problem = field_problem(field, value)
    if problem:
        raise InvalidUsage(field, value, problem)


class Run:
    """`with fuse.run(id) as run:` / `async with ...`: the run id applies to fuse.record/check
    calls in this thread or task (a context variable), and to run.record/run.check anywhere."""

    def __init__(self, fuse: Fuse, run_id: str):
        self.fuse, self.run_id = fuse, run_id
        self._token: contextvars.Token | None = None

    def record(self, model: str, input_tokens: int, output_tokens: int, **kwargs: Any) -> None:
        self.fuse.record(model, input_tokens, output_tokens, run=self.run_id, **kwargs)

    def check(self, **kwargs: Any) -> int:
        return self.fuse.check(run=self.run_id, **kwargs)

    def __enter__(self) -> "Run":
        self._token = _current_run.set(self.run_id)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _current_run.reset(self._token)

    async def __aenter__(self) -> "Run":
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()
