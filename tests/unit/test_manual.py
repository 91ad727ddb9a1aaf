import pytest

from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError
from tokenfuse.control.manual import parse_until, publish_manual_state


def test_until_accepts_durations_and_iso_times():
    assert parse_until(None, 1_000) is None
    assert parse_until("2h", 1_000) == 1_000 + 7_200_000
    assert parse_until("2030-01-01T00:00:00", 0) == 1_893_456_000_000
    assert parse_until("2030-01-01T01:00:00+01:00", 0) == 1_893_456_000_000


@pytest.mark.parametrize("until, message", [("yesterday", "neither a duration"),
                                            ("2001-01-01T00:00:00", "in the past")])
def test_bad_until_is_a_clear_error(until, message):
    with pytest.raises(ConfigError, match=message):
        parse_until(until, 1_800_000_000_000)


@pytest.mark.parametrize("scope, message", [("agent:*", "not a '\\*' pattern"), ("planet:x", "must be 'global'")])
def test_manual_states_name_one_valid_scope(scope, message):
    with pytest.raises(ConfigError, match=message):
        publish_manual_state(Settings(control_key="k" * 32), scope, "block", "test")


def test_manual_states_need_the_signing_key():
    with pytest.raises(ConfigError, match="TOKENFUSE_CONTROL_KEY"):
        publish_manual_state(Settings(), "agent:x", "block", "test")
