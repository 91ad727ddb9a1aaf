"""Feeds the local ledger with the budgets topic (read-only): a background thread follows
`<prefix>.budgets` from its beginning and hands every change to `LocalLedger.set_budgets`.

The broker may be unreachable when the runtime starts: the thread keeps trying, and until the
topic has been read no budget is enforced locally (the kill switch still is). Once read, the
budgets stay in memory, so local enforcement goes on through a broker outage.

Deletions are signed records, bare tombstones are ignored (budgets/signed.py). Signatures are
checked only if the runtime has TOKENFUSE_BUDGET_KEYS, which runtimes should not hold (the key
also signs): local enforcement only ever stops this runtime early, the worker is the authority.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Mapping

from confluent_kafka import KafkaException, Producer

from tokenfuse.config import Settings
from tokenfuse.budgets.signed import budget_decoder, in_force
from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.sdk.outage import KafkaLogGate, Outage

log = logging.getLogger(__name__)

_RETRY_S = 1.0
_POLL_S = 0.05


class BudgetFeed:
    def __init__(self, settings: Settings, receivers: list[Callable[[Iterable[Mapping[str, Any]]], None]],
                 outage: Outage | None = None):
        self._settings, self._receivers = settings, receivers  # LocalLedger.set_budgets, LeaseBook.set_budgets
        # librdkafka's lines go through the Fuse's outage log, like the reporter's and kill switch's.
        self._client_config = {"logger": KafkaLogGate(outage or Outage())}
        self._topic = settings.topic("budgets")
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokenfuse-budgets", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every budget present in the topic when this started is applied locally."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        follower = self._connect()
        if follower is None:
            return
        seen = -1
        try:
            while not self._stop.is_set():
                # Nothing applies before the topic is read to its end: no decision on a partial picture.
                if follower.wait_caught_up(0) and follower.version != seen:
                    seen = follower.version  # read before the snapshot: a change after it is seen next time
                    budgets = list(in_force(follower.snapshot()).values())
                    for receive in self._receivers:
                        receive(budgets)
                    self._ready.set()
                self._stop.wait(_POLL_S)
        finally:
            follower.close()

    def _connect(self) -> CompactedTopicFollower | None:
        # One probe for all attempts: a client per attempt would add connections and log lines.
        probe = Producer({**self._settings.kafka_config, **self._client_config})
        try:
            while not self._stop.is_set():
                # The follower waits up to 10 s for metadata; a short probe first keeps close()
                # prompt while the broker is away.
                if self._topic_exists(probe):
                    try:
                        return CompactedTopicFollower(self._settings, self._topic,
                                                      budget_decoder(self._settings.budget_verifier()),
                                                      ignore_tombstones=True, client_config=self._client_config)
                    except KafkaException as exc:
                        log.debug("budgets topic %s not readable yet: %s", self._topic, exc)
                self._stop.wait(_RETRY_S)
            return None
        finally:
            probe.flush(0)

    def _topic_exists(self, probe: Producer) -> bool:
        try:
            probe.poll(0)  # serves librdkafka's queued log lines
            meta = probe.list_topics(self._topic, timeout=_RETRY_S).topics[self._topic]
            return meta.error is None
        except KafkaException:
            return False
