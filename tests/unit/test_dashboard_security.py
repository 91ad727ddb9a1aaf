"""The dashboard's operator token file and the checks every POST passes."""

from __future__ import annotations

import os
import stat

import pytest

from tokenfuse.config import Settings
from tokenfuse.config.roles import require
from tokenfuse.dashboard.security import load_token, post_problem, token_path
from tokenfuse.errors import ConfigError


def test_the_token_file_is_created_readable_by_its_owner_only_and_kept(tmp_path):
    settings = Settings(data_dir=tmp_path)
    token = load_token(settings)
    path = token_path(settings)
    assert path == tmp_path / "dashboard.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32 and load_token(settings) == token


def test_a_token_file_others_can_read_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "op.token"
    path.write_text("a-long-enough-operator-token\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"mode 644 lets others read .*chmod 600"):
        load_token(Settings(dashboard_token_file=path))
    os.chmod(path, 0o600)
    assert load_token(Settings(dashboard_token_file=path)) == "a-long-enough-operator-token"


def test_a_short_token_is_refused(tmp_path):
    path = tmp_path / "op.token"
    path.write_text("short")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_token(Settings(dashboard_token_file=path))


TOKEN = "t" * 40
HOST = {"host": "127.0.0.1:6069"}


@pytest.mark.parametrize("headers, token, problem", [
    ({**HOST, "x-tokenfuse-token": TOKEN}, None, "kill and release are off"),
    (HOST, TOKEN, "missing or wrong operator token"),
    ({**HOST, "x-tokenfuse-token": TOKEN[:-1]}, TOKEN, "missing or wrong operator token"),
    ({**HOST, "x-tokenfuse-token": TOKEN, "origin": "http://evil.example"}, TOKEN, "cross-origin"),
    ({**HOST, "x-tokenfuse-token": TOKEN, "origin": "http://localhost:6069"}, TOKEN, "cross-origin"),
])
def test_posts_without_operator_mode_token_or_own_origin_are_refused(headers, token, problem):
    assert problem in post_problem(headers, token)


def test_a_post_with_the_token_from_the_dashboards_own_page_passes():
    assert post_problem({**HOST, "x-tokenfuse-token": TOKEN, "origin": "http://127.0.0.1:6069"}, TOKEN) is None
    assert post_problem({**HOST, "x-tokenfuse-token": TOKEN}, TOKEN) is None  # curl sends no Origin


def test_the_dashboard_does_not_start_without_the_key_that_verifies_what_it_shows():
    with pytest.raises(ConfigError, match="TOKENFUSE_CONTROL_KEY: required by the dashboard"):
        require(Settings(), "dashboard")
    assert require(Settings(control_key="k" * 32), "dashboard").control_key is not None
