"""Fixtures for tests that run the worker: the process, and a verified view of the control topic."""

from __future__ import annotations

import pytest

from tokenfuse.kafka.follow import CompactedTopicFollower
from tokenfuse.dev.process import RoleProcess
from tokenfuse.control.signing import decode_verified


@pytest.fixture
def worker(settings, tmp_path):
    proc = RoleProcess("worker", settings, tmp_path / "worker.log").start(timeout=90)
    yield proc
    proc.stop()


@pytest.fixture
def control(settings):
    """The latest signed state per scope of the control topic (forged ones would fail decode)."""
    verifier = settings.control_verifier()
    follower = CompactedTopicFollower(settings, settings.topic("control"), lambda b: decode_verified(b, verifier))
    yield follower
    follower.close()
