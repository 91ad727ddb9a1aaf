"""`tokenfuse topics create|list|acls`: the topics of tokenfuse/kafka/topics.py, created
idempotently, and the least-privilege ACLs per role of tokenfuse/kafka/acls.py."""

from __future__ import annotations

import argparse

from tokenfuse.config import Settings
from tokenfuse.kafka.topics import create_topics, topic_specs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create or list tokenfuse's Kafka topics, print or apply their ACLs")
    p.add_argument("action", choices=["create", "list", "acls"])
    p.add_argument("--apply", action="store_true",
                   help="acls: create the ACLs on the cluster (needs admin credentials) instead of printing them")
    p.add_argument("--format", choices=["table", "kafka-acls"], default="table",
                   help="acls: a table, or kafka-acls.sh commands")
    p.add_argument("--principal", action="append", default=[], metavar="ROLE=User:NAME",
                   help="acls: the principal of a role (default User:tokenfuse-ROLE); repeatable")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.action == "create":
        created = create_topics(settings)
        print(f"created {len(created)} topic(s)" + "".join(f"\n  {t}" for t in created) if created
              else "all topics exist")
    elif args.action == "acls":
        acls(settings, args)
    else:
        for spec in topic_specs(settings).values():
            config = ", ".join(f"{k}={v}" for k, v in spec.config.items())
            print(f"{spec.name:32} partitions={spec.partitions:<3} {config}\n{'':32} {spec.doc}")
    return 0


def acls(settings: Settings, args: argparse.Namespace) -> None:
    from tokenfuse.kafka.acls import apply_acls, kafka_acls_commands, principals, role_grants, table

    who = principals(args.principal)
    grants = role_grants(settings)
    if args.apply:
        count = apply_acls(settings, grants, who)
        print(f"applied {count} ACL bindings for {len(who)} roles at {settings.bootstrap_servers}")
    else:
        print(kafka_acls_commands(grants, who) if args.format == "kafka-acls" else table(grants, who))
