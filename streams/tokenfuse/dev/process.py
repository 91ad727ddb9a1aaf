"""Start tokenfuse process roles (`tokenfuse worker`, `sink`, `notify`, `dashboard`, `autopilot`) as child
processes and wait until they are ready: used by the demo and by the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tokenfuse.config import Settings
from tokenfuse.errors import TokenfuseError
from tokenfuse.worker.readiness import READY_LINE

# The line each role logs once it is ready: the worker once it enforces (worker/readiness.py).
READY_LINES = {"worker": READY_LINE, "sink": "sink ready", "notify": "notify ready", "dashboard": "dashboard ready",
               "autopilot": "autopilot ready"}
# The line Faust logs once a worker's agents run (before they have caught up): benchmarks time from it.
FAUST_STARTED_LINE = "[^Worker]: Ready"


class RoleProcess:
    def __init__(self, role: str, settings: Settings, log_path: Path, *args: str,
                 extra_env: dict[str, str] | None = None, module: str = "tokenfuse.cli.main",
                 ready_line: str | None = None):
        """`python -m <module> <role> <args>`; a Faust app of one's own (benchmarks) passes its
        module, role "worker" and the line to wait for (FAUST_STARTED_LINE)."""
        self.role, self.settings, self.log_path, self.args = role, settings, log_path, args
        self.extra_env, self.module = extra_env or {}, module
        self.ready_line = ready_line or READY_LINES[role]
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self, timeout: float = 60.0) -> "RoleProcess":
        """Start the process; return when it logged its ready line. Raises with the log's tail if
        it exits or does not get ready in time. A second start while it runs is a mistake (two
        instances of one role fence or race each other): `with role:` starts it, do not add
        `.start()`."""
        if self.proc is not None and self.proc.poll() is None:
            raise TokenfuseError(f"{self.role} is already running (pid {self.proc.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, **self.settings.to_env(), **self.extra_env}
        loglevel = ("--loglevel", "info") if self.role == "worker" else ()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, self.role, *loglevel, *self.args],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while self.ready_line not in self._new_log():
            if self.proc.poll() is not None:
                raise TokenfuseError(f"{self.role} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TokenfuseError(f"{self.role} not ready within {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.1)
        return self

    @property
    def ready_message(self) -> str:
        """The whole line the role logged when it got ready (the dashboard's holds its URL)."""
        return next(line for line in self._new_log().splitlines() if self.ready_line in line)

    def _new_log(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self._new_log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: a crash, for recovery tests."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "RoleProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
