"""`tokenfuse topics create|list`: the topics of tokenfuse/kafka/topics.py, created idempotently."""

from __future__ import annotations

import argparse

from tokenfuse.config import Settings
from tokenfuse.kafka.topics import create_topics, topic_specs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create or list tokenfuse's Kafka topics")
    p.add_argument("action", choices=["create", "list"])
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.action == "create":
        created = create_topics(settings)
        print(f"created {len(created)} topic(s)" + "".join(f"\n  {t}" for t in created) if created
              else "all topics exist")
    else:
        for spec in topic_specs(settings).values():
            config = ", ".join(f"{k}={v}" for k, v in spec.config.items())
            print(f"{spec.name:32} partitions={spec.partitions:<3} {config}\n{'':32} {spec.doc}")
    return 0
