"""Broker outages in an agent runtime's log: one line when Kafka goes away, one when it is back.

librdkafka logs a line for every failed reconnect of every client (several a second), which
floods the host application's log during an outage while telling it nothing new. A Fuse's
clients share one `Outage`: their librdkafka logger is a `KafkaLogGate`, which turns connection
failures into counters; the reporter and the kill switch report trouble and contact. The first
trouble logs one warning (with the first error), the next contact logs one line saying how long
it lasted and how many errors were not logged. Counters: `fuse.stats` (broker_outages,
connection_errors).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("tokenfuse.sdk")
_KAFKA_LOG = logging.getLogger("tokenfuse.kafka")

# librdkafka serves queued log lines and error callbacks late (at the next poll), so lines from
# an outage that just ended keep arriving for a moment: within this many seconds of contact they
# are counted but do not announce a new outage.
SETTLE_S = 5.0


class Outage:
    """Up/down state of the brokers as a Fuse's clients see them. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_contact = float("-inf")
        self.outages = 0
        self.connection_errors = 0
        self._errors_at_down = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def unsettled(self) -> bool:
        """Down, or back for less than SETTLE_S (brokers just restarted log transient warnings)."""
        return self._down_since is not None or time.monotonic() - self._last_contact < SETTLE_S

    def trouble(self, detail: str) -> None:
        """A client could not reach a broker. Logs only when this starts an outage."""
        with self._lock:
            self.connection_errors += 1
            if self._down_since is not None or time.monotonic() - self._last_contact < SETTLE_S:
                return
            self._down_since = time.monotonic()
            self._errors_at_down = self.connection_errors - 1
            self.outages += 1
        log.warning("tokenfuse: Kafka unreachable (%s); usage goes to the local spool, the kill switch keeps "
                    "its states; further connection errors are counted, not logged, until it is back", detail)

    def contact(self) -> None:
        """A client heard from a broker. Logs only when this ends an outage."""
        with self._lock:
            self._last_contact = now = time.monotonic()
            if self._down_since is None:
                return
            lasted, self._down_since = now - self._down_since, None
            errors = self.connection_errors - self._errors_at_down
        log.warning("tokenfuse: Kafka reachable again after %.1f s (%d connection errors)", lasted, errors)


class KafkaLogGate:
    """librdkafka's `logger` for the SDK's clients: connection failures (facility FAIL, level
    ERROR) become Outage trouble; disconnect notices, and every line while an outage lasts or
    settles (a restarted broker's "coordinator load in progress", "leader not found"...), go to
    debug; everything else goes to the `tokenfuse.kafka` logger at its level, as before."""

    def __init__(self, outage: Outage):
        self.outage = outage

    def log(self, level: int, fmt: str, *args: object) -> None:
        failure = bool(args) and args[0] == "FAIL"
        if failure and level >= logging.ERROR:
            self.outage.trouble(str(args[-1]))
        elif failure or self.outage.unsettled():
            _KAFKA_LOG.debug(fmt, *args)
        else:
            _KAFKA_LOG.log(level, fmt, *args)
