"""From records to transitions: each told once, levels become blocked/released, and the saved
state after a commit re-derives the same transitions from records read again."""

from __future__ import annotations

from tokenfuse.notify.state import SavedState, load_state, save_state
from tokenfuse.notify.transitions import Enforced, Skipped, Source, Tracker

NOW = 1_800_000_000_000
DAY = 86_400_000


def alert(alert_id="b1|agent:x|0|100", kind="threshold", action="block", **extra):
    return {"alert_id": alert_id, "kind": kind, "scope": "agent:x", "budget_id": "b1", "action": action,
            "metric": "cost_micro_usd", "spent": 12_300_000, "limit": 10_000_000, "created_at": NOW - 5,
            "window_end": NOW + 60_000, **extra}


def state(level, issued_at=NOW - 5, **extra):
    return {"scope": "team:acme/search", "state": level, "budget_id": "b2", "issued_at": issued_at,
            "version": issued_at, "until": NOW + 60_000 if level == "block" else None,
            "reason": "over budget", **extra}


def src(offset, topic="control"):
    return Source(topic, 0, offset)


def test_an_alert_fires_once_and_its_replay_is_a_duplicate():
    tracker = Tracker(DAY)
    t = tracker.alert(alert(), src(0, "alerts"), NOW)
    assert (t.event, t.kind, t.severity, t.id) == ("fired", "threshold", "critical", "fired:b1|agent:x|0|100")
    assert (t.spent, t.limit, t.window_end) == (12_300_000, 10_000_000, NOW + 60_000)
    assert tracker.alert(alert(), src(1, "alerts"), NOW) == Skipped("duplicate")


def test_severity_follows_the_action_and_the_kind():
    tracker = Tracker(DAY)
    assert tracker.alert(alert("a", action="alert"), None, NOW).severity == "info"
    assert tracker.alert(alert("b", action="warn"), None, NOW).severity == "warning"
    assert tracker.alert(alert("c", kind="forecast", eta=NOW + 3_600_000), None, NOW).severity == "warning"
    cleared = tracker.alert(alert("d", kind="forecast-cleared"), None, NOW)
    assert (cleared.event, cleared.kind) == ("cleared", "forecast")
    from_worker = tracker.alert(alert("e", kind="forecast_cleared"), None, NOW)  # the worker's spelling
    assert (from_worker.event, from_worker.kind) == ("cleared", "forecast")
    assert tracker.alert(alert("f", kind="forecast", eta_p50=NOW + 60_000), None, NOW).eta == NOW + 60_000


def test_control_levels_become_blocked_and_released_transitions():
    tracker = Tracker(DAY)
    assert tracker.control(state("warn", NOW - 6), src(0), NOW) == Skipped("no_transition")
    blocked = tracker.control(state("block"), src(1), NOW)
    assert (blocked.event, blocked.kind, blocked.until) == ("blocked", "threshold", NOW + 60_000)
    assert tracker.control(state("block", NOW - 4), src(2), NOW) == Skipped("no_transition")
    released = tracker.control(state("allow", NOW - 3, budget_id=None), src(3), NOW)
    assert (released.event, released.kind, released.severity) == ("released", "manual", "critical")


def test_stale_records_and_expired_blocks_are_not_told():
    tracker = Tracker(DAY)
    assert tracker.alert(alert(created_at=NOW - DAY - 1), None, NOW) == Skipped("stale")
    assert tracker.control(state("block", until=NOW - 1), src(0), NOW) == Skipped("stale")
    # The expired block was not remembered, so the release that follows tells nothing either.
    assert tracker.control(state("allow", NOW - 4), src(1), NOW) == Skipped("no_transition")


def test_a_restart_from_the_committed_state_tells_uncommitted_transitions_again():
    tracker = Tracker(DAY)
    assert tracker.control(state("block"), src(0), NOW).event == "blocked"
    assert tracker.alert(alert(), Source("alerts", 1, 7), NOW).event == "fired"
    assert tracker.control(state("allow", NOW - 1), src(1), NOW).event == "released"
    tracker.commit({("control", 0): 1}, NOW)  # only the block is committed
    assert tracker.scopes == {"team:acme/search": Enforced("block", NOW - 5)} and tracker.seen == {}

    restarted = Tracker(DAY, dict(tracker.scopes), dict(tracker.seen))
    assert restarted.alert(alert(), Source("alerts", 1, 7), NOW).event == "fired"
    assert restarted.control(state("allow", NOW - 1), src(1), NOW).event == "released"


def test_a_replayed_older_allow_after_a_block_is_skipped_and_never_told_as_a_release():
    tracker = Tracker(DAY)
    assert tracker.control(state("block", version=NOW - 5), src(0), NOW).event == "blocked"
    # An attacker (or a compaction replay) re-sends a signed allow issued later but versioned older.
    assert tracker.control(state("allow", NOW - 2, version=NOW - 9), src(1), NOW) == Skipped("older")
    assert tracker.control(state("block", version=NOW - 5), src(2), NOW) == Skipped("older")
    released = tracker.control(state("allow", NOW - 1, version=NOW - 4), src(3), NOW)
    assert (released.event, released.id) == ("released", f"released:team:acme/search:{NOW - 4}")


def test_saved_state_keeps_versions_and_reads_files_written_before_versions(tmp_path):
    path = tmp_path / "notify.json"
    save_state(path, SavedState(scopes={"team:a": Enforced("block", 42)}, seen={"x": 1}))
    assert load_state(path).scopes == {"team:a": Enforced("block", 42)}
    path.write_text('{"scopes": {"team:a": "block"}, "seen": {}, "delivered": {}}', encoding="utf-8")
    restarted = Tracker(DAY, load_state(path).scopes)
    assert restarted.scopes == {"team:a": Enforced("block", 0)}


def test_commit_forgets_alert_ids_once_their_records_would_be_stale():
    tracker = Tracker(DAY)
    tracker.alert(alert(), None, NOW)
    tracker.commit({}, NOW + DAY)
    assert tracker.seen == {}
