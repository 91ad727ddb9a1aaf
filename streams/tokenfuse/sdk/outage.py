"""Broker outages in an agent runtime's log: one line when Kafka goes away, one when it is back.

librdkafka logs a line for every failed reconnect of every client (several a second), which
floods the host application's log during an outage while telling it nothing new. A Fuse's
clients share one `Outage`: their librdkafka logger is a `KafkaLogGate`, which turns connection
failures into counters; the reporter and the kill switch report trouble and contact. Trouble
after SETTLE_S without contact logs one warning (with the error), the next contact logs one line
saying how long it lasted and how many connection errors there were. Counters: `fuse.stats` (broker_outages,
connection_errors).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("tokenfuse.sdk")
_KAFKA_LOG = logging.getLogger("tokenfuse.kafka")

# Trouble is announced only when no client has heard from a broker for this long: replies to
# requests made before the outage (delivery reports, offsets) arrive for a moment after it
# starts, and queued log lines and error callbacks from an outage that just ended arrive for a
# moment after it ends; neither should make a second outage in the log. The same span after an
# outage, librdkafka's transient warnings of a restarted broker go to debug.
SETTLE_S = 5.0
# librdkafka facilities whose warnings describe what it retries by itself (a partition leader
# moving while a broker shuts down, a transaction coordinator still loading): logged at INFO.
RETRIED = ("METADATAUPDATE", "GETPID")


class Outage:
    """Up/down state of the brokers as a Fuse's clients see them. Thread-safe; `contact()` is
    cheap enough for every delivery report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_contact = float("-inf")
        self._ended_at = float("-inf")
        self._last_trouble = float("-inf")
        self.outages = 0
        self.connection_errors = 0
        self._errors_at_down = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def unsettled(self) -> bool:
        """Down, failing since the last contact (not announced yet), or back for less than SETTLE_S."""
        return (self._down_since is not None or self._last_trouble > self._last_contact
                or time.monotonic() - self._ended_at < SETTLE_S)

    def trouble(self, detail: str) -> None:
        """A client could not reach a broker. Logs when this starts an outage: nothing heard
        from any broker for SETTLE_S (so one broker of several failing is only counted)."""
        with self._lock:
            self.connection_errors += 1
            self._last_trouble = now = time.monotonic()
            if self._down_since is not None or now - self._last_contact < SETTLE_S:
                return
            self._down_since = now
            self._errors_at_down = self.connection_errors - 1
            self.outages += 1
        log.warning("tokenfuse: Kafka unreachable (%s); usage goes to the local spool, the kill switch keeps "
                    "its states; further connection errors are counted, not logged, until it is back", detail)

    def suspect(self) -> None:
        """A client lost a connection (it may just reconnect): hold back librdkafka's other lines
        until the next contact, since a lost broker first shows as metadata warnings."""
        self._last_trouble = time.monotonic()

    def contact(self) -> None:
        """A client heard from a broker. Logs when this ends an outage."""
        self._last_contact = time.monotonic()
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            self._ended_at = now = time.monotonic()
            lasted, self._down_since = now - self._down_since, None
            errors = self.connection_errors - self._errors_at_down
        log.warning("tokenfuse: Kafka reachable again after %.1f s (%d connection errors)", lasted, errors)


class KafkaLogGate:
    """librdkafka's `logger` for the SDK's clients. Connection failures (facility FAIL, level
    ERROR) become Outage trouble, disconnect notices (FAIL below ERROR) make it suspect; these and
    every other line from a lost connection until the next contact, during an outage and as it
    settles (a restarted broker's "coordinator load in progress", "leader not found"...) go to
    debug; RETRIED warnings go to info. Everything else goes to the `tokenfuse.kafka` logger at
    its level, as before."""

    def __init__(self, outage: Outage):
        self.outage = outage

    def log(self, level: int, fmt: str, *args: object) -> None:
        failure = bool(args) and args[0] == "FAIL"
        if failure and level >= logging.ERROR:
            self.outage.trouble(str(args[-1]))
        elif failure:
            self.outage.suspect()
            _KAFKA_LOG.debug(fmt, *args)
        elif self.outage.unsettled():
            _KAFKA_LOG.debug(fmt, *args)
        elif args and args[0] in RETRIED:
            _KAFKA_LOG.log(min(level, logging.INFO), fmt, *args)
        else:
            _KAFKA_LOG.log(level, fmt, *args)
