#!/usr/bin/env bash
# Run a command with the local broker up: starts it if it is not running, and stops it afterwards
# (even when the command fails) only if this script started it.
#   deploy/kafka/with-broker.sh python -m pytest
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if "$here/kafka.sh" status >/dev/null 2>&1; then
  exec "$@"
fi
"$here/kafka.sh" start
trap '"$here/kafka.sh" stop' EXIT
"$@"
