"""`tokenfuse`: one command, a subcommand per process role or operator task.

Each subcommand lives in its own module under tokenfuse.cli with `register(subparsers)`; the
handler it sets returns an exit code. A TokenfuseError prints as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tokenfuse.errors import TokenfuseError

# Modules under tokenfuse.cli that add subcommands, in --help order.
COMMANDS = ["demo", "topics", "worker", "sink", "notify", "dashboard", "control", "budgets", "alerts", "sql", "db",
            "report", "autopilot"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenfuse", description="A real-time fuse for LLM-agent token spend.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"tokenfuse.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("tokenfuse.kafka").setLevel(logging.CRITICAL)
    try:
        return args.handler(args) or 0
    except TokenfuseError as exc:
        print(f"tokenfuse: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
