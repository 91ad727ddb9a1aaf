"""The token files that guard the local endpoints (the sink's /sql, the worker's pages)."""

from __future__ import annotations

import os
import stat

import pytest

from tokenfuse.config.token_file import TokenFileError, bearer, bearer_matches, read_token, write_token


def test_each_write_makes_a_new_token_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "data" / "worker.token"
    first = write_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 40
    assert read_token(path, "worker") == first
    second = write_token(path)
    assert second != first and read_token(path, "worker") == second
    assert os.listdir(path.parent) == ["worker.token"]  # no temporary file left behind


def test_a_token_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "worker.token"
    write_token(path)
    path.chmod(0o640)
    with pytest.raises(TokenFileError, match=r"readable by you only .*-rw-r-----.*restart the worker"):
        read_token(path, "worker")


def test_a_missing_token_file_says_whose_user_and_data_dir_to_use(tmp_path):
    with pytest.raises(TokenFileError, match=r"sink's token .* run this as the user that runs the sink"):
        read_token(tmp_path / "sink.token", "sink")


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Bearer tok", "Bearer token-x", "token-xyz", "Basic token-xyz"])
def test_only_the_exact_bearer_token_matches(header):
    assert not bearer_matches(header, "token-xyz")
    assert bearer_matches(bearer("token-xyz")["Authorization"], "token-xyz")
