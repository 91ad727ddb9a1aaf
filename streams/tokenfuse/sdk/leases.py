"""Leases, the runtime's side: this runtime spends a shared scope's budget (global, org, team, an
agent run by several processes) only within the lease the worker granted it, counted locally at
record() and decided at check(), so no pipeline lag sits between a crossing and the refusal.

Per budget watching one of this runtime's shared scopes (discrete window, a block threshold), a
`Lease` holds the cap the worker granted for the current window (how far this runtime's own
spend in the window may go), its expiry and the own count. A background thread reads the grants
addressed to this holder from `<prefix>.leases` (verified with the control key) and asks for more
on `<prefix>.lease-requests` when the headroom runs low or the lease nears its expiry. At the cap,
check() asks and waits up to `lease_wait_s`; a worker that says nothing is left makes it raise
BudgetExceeded, a silent one LeaseUnavailable, and past `max_blind` seconds without a valid lease
the fail policy applies. Protocol and bound: docs/leases.md.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tokenfuse.config import Settings
from tokenfuse.control.signing import verify_record
from tokenfuse.errors import BudgetExceeded, DecodeError, LeaseUnavailable, SignatureError
from tokenfuse.kafka.codec import codec
from tokenfuse.sdk.ledger import Bound, WindowCount
from tokenfuse.sdk.options import FuseOptions
from tokenfuse.sdk.outage import KafkaLogGate, Outage
from tokenfuse.usage.pricing import PriceCatalog
from tokenfuse.usage.scopes import runtime_scopes
from tokenfuse.usage.windows import metric
from tokenfuse.worker.engine.rules import ActiveBudget, BudgetIndex
from tokenfuse.control.leases import SEP, block_spend, lease_key, leasable

log = logging.getLogger(__name__)

_POLL_S = 0.02
_ASK_AGAIN_S = 0.5  # an unanswered request is repeated after this long


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Lease:
    budget: ActiveBudget
    scope: str
    limit: int  # the spend at which the budget blocks
    count: WindowCount  # this runtime's own spend
    window_start: int = -1  # of the grant held
    cap: int = 0
    expires: float = float("-inf")  # monotonic
    ttl_s: float = 0.0
    exhausted: bool = False
    version: int = -1
    low_water: int = 0  # ask for more when the headroom falls below this
    asked: float = float("-inf")  # monotonic time of the last request
    since: float = field(default_factory=time.monotonic)  # leaseless since (monotonic)
    active: float = field(default_factory=time.monotonic)  # last check (monotonic): renew while used

    @property
    def metric(self) -> str:
        return self.budget.budget["metric"]

    def spent(self, now_ms: int) -> tuple[int, int, int]:
        """(own spend in the window of now, window start, window end)."""
        window = self.count.current(now_ms)
        return metric(window.totals, self.metric), window.start, window.end

    def valid(self, window_start: int) -> bool:
        return self.window_start == window_start and time.monotonic() < self.expires


class LeaseBook:
    def __init__(self, settings: Settings, options: FuseOptions, outage: Outage | None = None,
                 load_catalog: Callable[[], PriceCatalog] = PriceCatalog.load):
        self.holder = uuid.uuid4().hex
        self._settings = settings
        self._verifier = settings.control_verifier()
        self._scopes = [s for s in runtime_scopes(options.org, options.team, options.agent)
                        if s.partition(":")[0] not in options.local_kinds]
        self._wait_s, self._max_blind_s = options.lease_wait_s, options.max_blind
        self._fail_closed = options.fail_policy == "closed"
        self._client_config = {"logger": KafkaLogGate(outage or Outage())}
        self._load_catalog = load_catalog
        self.catalog: PriceCatalog | None = None
        self.leases: dict[tuple[str, str], Lease] = {}
        self.active = False  # any lease: record() and check() skip this book otherwise
        self.rejected = 0
        self._cond = threading.Condition()
        self._producer: Producer | None = None
        self._warned_blind = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokenfuse-leases", daemon=True)
        self._thread.start()

    # -- budgets (the budgets feed's thread) --------------------------------------------------------

    def set_budgets(self, budgets: Iterable[Mapping[str, Any]]) -> None:
        index = BudgetIndex(budgets)
        wanted = {(b.id, scope): b for scope in self._scopes for b in index.for_scope(scope) if leasable(b)}
        if self.catalog is None and any(b.budget["metric"] == "cost_micro_usd" for b in wanted.values()):
            self.catalog = self._load_catalog()
        with self._cond:
            leases = {}
            for (budget_id, scope), budget in wanted.items():
                old = self.leases.get((budget_id, scope))
                count = old.count if old is not None and old.budget.window == budget.window else WindowCount(budget.window)
                lease = leases[(budget_id, scope)] = Lease(budget, scope, block_spend(budget.budget), count)
                if old is not None and old.count is count:  # the same window: the grant still holds
                    lease.window_start, lease.cap, lease.expires, lease.ttl_s = old.window_start, old.cap, old.expires, old.ttl_s
                    lease.exhausted, lease.version, lease.low_water = old.exhausted, old.version, old.low_water
            self.leases, self.active = leases, bool(leases)

    # -- record() and check() (the agent's threads) -------------------------------------------------

    def count(self, event: Mapping[str, Any], now_ms: int) -> None:
        cost = self.catalog.cost(dict(event)).micro_usd if self.catalog is not None else 0
        vec = [event["input_tokens"], event["output_tokens"], event["cached_tokens"], cost, 1]
        with self._cond:
            for lease in self.leases.values():
                lease.count.add(now_ms, vec)

    def check(self, bound: Bound | None, provider: str) -> None:
        """Raise unless every leased scope has headroom for this call (its declared bound, if any)."""
        with self._cond:
            for lease in list(self.leases.values()):
                self._within(lease, bound, provider)

    def _within(self, lease: Lease, bound: Bound | None, provider: str) -> None:
        need = bound.amount(lease.metric, self.catalog, provider) if bound is not None else 0
        deadline = time.monotonic() + self._wait_s
        lease.active = time.monotonic()
        while True:
            now = _now_ms()
            spent, start, end = lease.spent(now)
            if lease.valid(start):
                if spent < lease.cap and spent + need <= lease.cap:
                    return
                if lease.exhausted:
                    raise BudgetExceeded(lease.scope, budget_id=lease.budget.id, spent=spent, limit=lease.limit,
                                         until_ms=end, reason=f"lease: this runtime's share is spent ({spent} of "
                                         f"{lease.cap} {lease.metric}) and nothing is left to grant in window {start}")
            self._ask(lease, now, need)
            left = deadline - time.monotonic()
            if left <= 0:
                return self._no_lease(lease, spent, end)
            self._cond.wait(left)

    def _no_lease(self, lease: Lease, spent: int, end: int) -> None:
        """No grant within lease_wait_s: refuse this call, or past max_blind apply the fail policy."""
        leaseless = time.monotonic() - max(lease.since, lease.expires)
        if self._max_blind_s and leaseless > self._max_blind_s:
            if not self._warned_blind:
                self._warned_blind = True
                log.warning("tokenfuse: no lease on %s for %.0f s (over TOKENFUSE_MAX_BLIND=%ss); fail policy %s",
                            lease.scope, leaseless, self._max_blind_s, "closed" if self._fail_closed else "open")
            if not self._fail_closed:
                return
            raise BudgetExceeded("control", reason=f"no lease on {lease.scope} for over {self._max_blind_s}s "
                                                   "and the fail policy is closed")
        raise LeaseUnavailable(lease.scope, budget_id=lease.budget.id, spent=spent, limit=lease.limit, until_ms=end,
                               reason=f"lease: no grant from the worker within {self._wait_s}s")

    def _ask(self, lease: Lease, now_ms: int, need: int = 0) -> None:
        """Send a request unless one is pending (caller holds the lock). `used` counts the call's
        declared bound too, so a grant makes room for it when the budget has it."""
        if self._producer is None or time.monotonic() - lease.asked < _ASK_AGAIN_S:
            return
        lease.asked = time.monotonic()
        spent, start, _ = lease.spent(now_ms)
        request = {"budget_id": lease.budget.id, "scope": lease.scope, "holder": self.holder, "window_start": start,
                   "used": spent + need, "sent_at": now_ms}
        try:
            self._producer.produce(self._settings.topic("lease-requests"),
                                   key=lease_key(lease.budget.id, lease.scope, self.holder).encode(),
                                   value=codec("LeaseRequest").encode(request))
        except (KafkaException, BufferError) as exc:
            log.debug("lease request not sent: %s", exc)

    # -- the reader thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        consumer = Consumer({**self._settings.kafka_config, **self._client_config,
                             "group.id": f"tokenfuse-leases-{self.holder}", "enable.auto.commit": False,
                             "isolation.level": "read_committed", "fetch.wait.max.ms": 10})
        self._producer = Producer({**self._settings.kafka_config, **self._client_config, "linger.ms": 0})
        mine = (SEP + self.holder).encode()
        try:
            while not self._stop.is_set() and not self._assign(consumer):
                self._stop.wait(1.0)
            last_tick = 0.0
            while not self._stop.is_set():
                msg = consumer.poll(_POLL_S)
                if msg is not None and msg.error() is None and (msg.key() or b"").endswith(mine):
                    self._apply(msg.value())
                if time.monotonic() - last_tick >= _POLL_S:
                    last_tick = time.monotonic()
                    self._renew()
                    self._producer.poll(0)
        finally:
            consumer.close()
            self._producer.flush(1)

    def _assign(self, consumer: Consumer) -> bool:
        """Grants from now on (this holder is new): every partition at its end."""
        topic = self._settings.topic("leases")
        try:
            meta = consumer.list_topics(topic, timeout=1).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            consumer.assign([TopicPartition(topic, p, consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=5)[1]) for p in meta.partitions])
            return True
        except KafkaException as exc:
            log.debug("leases topic %s not readable yet: %s", topic, exc)
            return False

    def _apply(self, value: bytes) -> None:
        try:
            grant = codec("Lease").decode(value)
            verify_record("Lease", grant, self._verifier, f"lease for {grant.get('scope')!r}")
        except (DecodeError, SignatureError) as exc:
            self.rejected += 1
            log.warning("tokenfuse: ignoring a lease: %s", exc)
            return
        with self._cond:
            lease = self.leases.get((grant["budget_id"], grant["scope"]))
            if lease is None or grant["holder"] != self.holder or grant["version"] <= lease.version:
                return
            spent, _, _ = lease.spent(_now_ms())
            # The TTL counts from receipt: the two clocks need not agree.
            lease.ttl_s = (grant["expires_at"] - grant["issued_at"]) / 1000
            lease.window_start, lease.cap, lease.version = grant["window_start"], grant["cap"], grant["version"]
            lease.expires, lease.exhausted = time.monotonic() + lease.ttl_s, grant["exhausted"]
            lease.low_water, lease.asked = (grant["cap"] - spent) // 2, float("-inf")
            lease.since = time.monotonic()
            self._cond.notify_all()

    def _renew(self) -> None:
        """Ask ahead: before the headroom runs out, and before an active lease expires."""
        now, mono = _now_ms(), time.monotonic()
        with self._cond:
            for lease in self.leases.values():
                spent, start, _ = lease.spent(now)
                used = mono - lease.active < max(lease.ttl_s, 1.0) or lease.version < 0
                if not used or (lease.exhausted and lease.valid(start)):
                    continue  # idle runtimes let their leases lapse: they do not dilute the others'
                if (not lease.valid(start) or lease.cap - spent <= lease.low_water
                        or lease.expires - mono < lease.ttl_s / 3):
                    self._ask(lease, now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
