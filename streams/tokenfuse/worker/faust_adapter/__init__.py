"""Everything that touches Faust's or aiokafka's internals, in one place, installed by
`install()`, which refuses any version other than those the patches were written against.

What each part corrects upstream (faust-streaming 0.15.3, aiokafka 0.14.0):
- transactions.SourcePartitionTransactions: Faust sends through the transactional producer of
  the message's destination partition, so a repartitioned output commits apart from the input
  that caused it (or fails: "No transaction producer found"). Also commits all work when
  partitions are revoked and stops producers of partitions no longer owned.
- transactions.commit_gate / ack_all: Faust commits on a timer in the middle of a batch.
- consumer.BatchDeliveryConsumer: the per-message `wait_first` race of `_drain_messages` cost
  more than half of a do-nothing agent's time. consume_in_batches: the worker's two topics skip
  Faust's per-message delivery (conductor, Event, stream queue, take_events; a third of the
  worker's time) and reach their stage as one list per fetch, tracked, acked and committed as
  an agent's events are; a batch is never cut by a rebalance (shielded; the revoke waits for its
  ack) and never undoes the read offsets a seek set meanwhile.
- transactions.process_as: `Stream._set_current_event` also overwrites the stream's attribute
  that `take_events` reads, duplicating one event and losing another; here it sets the current
  event of a batch's partition for sends and table writes.
- consumer.ShortWaitConsumerThread: Faust hard-codes a 1500 ms fetch wait, and under
  read_committed a transaction's commit does not end a held fetch: each hop waited up to 1.5 s.
- consumer.GatedCommitConsumer: seeks with the flow running drop delivered messages; aiokafka
  leaves partitions without a committed offset where a fetch took them; recovery asked a cached
  last stable offset (None for unfetched partitions) and a position that could be None; Faust's
  livelock check asserted on a partition waiting for its reset after a seek to the beginning.
- recovery: Faust's shortcut for changelogs ending in a commit marker fired while records were
  still on their way to the table.
- tables.write / changelog_record: deletions as tombstones (Faust sent JSON null) and the memory
  store told the partition of every key it holds.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from tokenfuse.errors import TokenfuseError

SUPPORTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class UnsupportedVersion(TokenfuseError):
    """An installed Faust or aiokafka is not the version the worker's patches were written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    installed = installed or {name: metadata.version(name) for name in SUPPORTED}
    wrong = [f"{name} {installed.get(name)} is installed, the worker needs {version}"
             for name, version in SUPPORTED.items() if installed.get(name) != version]
    if wrong:
        raise UnsupportedVersion(
            "the worker patches Faust/aiokafka internals for exactly-once (worker/faust_adapter) and "
            "refuses to start on untested versions: " + "; ".join(wrong)
            + " (pip install -e . installs the pinned ones)")


def install(app: Any, kafka_config: dict[str, Any]) -> None:
    """Install the patches on an app before it starts (its transport creates the consumer and
    the transaction manager). `kafka_config` (Settings.kafka_config) is for the recovery probe."""
    check_versions()
    from tokenfuse.worker.faust_adapter.consumer import GatedCommitConsumer
    from tokenfuse.worker.faust_adapter.transactions import SourcePartitionTransactions

    app.transport.TransactionManager = SourcePartitionTransactions
    app.transport.Consumer = GatedCommitConsumer
    app.__dict__["_tokenfuse_kafka_config"] = kafka_config
