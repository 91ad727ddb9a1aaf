"""The detector plug-ins inside the settling of a scope: alerts, enforcement entries, acks,
request fingerprints in deltas, and state that survives the record's JSON form."""

from __future__ import annotations

import json
from collections import Counter

from tokenfuse.control.signing import Signer, Verifier, decode_verified
from tokenfuse.kafka.codec import codec
from tokenfuse.usage.windows import parse_window
from tokenfuse.worker.engine.deltas import Delta, DeltaBatch, decode_message
from tokenfuse.worker.engine.plugins import ForecastDetector, LoopDetector, SpikeDetector
from tokenfuse.worker.engine.record import ScopeRecord
from tokenfuse.worker.engine.rules import BudgetIndex
from tokenfuse.worker.engine.settle import Settler

HOUR = parse_window("1h")
KEYS = Verifier({"k1": b"k" * 32}, "unit")


class Acks:
    def __init__(self, quiet: set[tuple[str, str, str]]):
        self.quiet_for = quiet

    def quiet(self, budget_id: str, kind: str, scope: str, now_ms: int) -> bool:
        return (budget_id, kind, scope) in self.quiet_for


def budget(**kw):
    return {"id": "b", "scope": "run:*", "metric": "total_tokens", "window": "1h", "timezone": "UTC",
            "limit": 10**9, "thresholds": [{"percent": 100, "action": "block"}], **kw}


def settler(quiet=frozenset()):
    acks = Acks(set(quiet))
    return Settler({HOUR.name: HOUR}, Counter(), Signer("k1", b"k" * 32, "unit"), [ForecastDetector(acks), LoopDetector(acks),
                                                                SpikeDetector(acks)])


def decoded(outputs):
    alerts = [codec("Alert").decode(o.value) for o in outputs if o.topic == "alerts"]
    states = [decode_verified(o.value, KEYS) for o in outputs if o.topic == "control"]
    return alerts, states


def test_fingerprints_ride_in_run_and_agent_deltas_only():
    batch = DeltaBatch()
    event = {"event_time": 5_500, "input_tokens": 1, "output_tokens": 0, "cached_tokens": 0, "event_id": "e",
             "request_fingerprint": "fp"}
    for _ in range(3):
        batch.add(event, ["global", "agent:a", "run:r"], 1)
    by_scope = {d.scope: d for part in batch.messages(2, 1_000_000) for d in decode_message(part[1])}
    assert by_scope["run:r"].fingerprints == {"fp": 3} == by_scope["agent:a"].fingerprints
    assert by_scope["global"].fingerprints is None


def test_a_looping_run_is_blocked_at_the_repeat_and_its_state_survives_the_record_json():
    index = BudgetIndex([budget(loop={"repeats": 3, "within_ms": 60_000, "action": "block", "per": "run"})])
    s, record = settler(), ScopeRecord()
    out = []
    for t in range(3):
        out += s.settle("run:r", record, [Delta("run:r", t * 1000, 10, events=1, last_event_id=f"e{t}",
                                                fingerprints={"same": 1})], index, 10_000)
        record = ScopeRecord.from_json(json.loads(json.dumps(record.to_json())))
    alerts, states = decoded(out)
    assert [(a["kind"], a["fingerprint"], a["event_id"]) for a in alerts] == [("loop", "same", "e2")]
    assert [(c["state"], c["until"]) for c in states] == [("block", 3_600_000)]
    assert states[0]["reason"].startswith("loop:")


def test_an_acknowledged_detector_stays_quiet_on_that_scope():
    index = BudgetIndex([budget(loop={"repeats": 2, "within_ms": 60_000, "action": "block", "per": "run"})])
    s = settler(quiet={("b", "loop", "run:r")})
    deltas = [Delta("run:r", t * 1000, 10, events=1, fingerprints={"same": 1}) for t in range(3)]
    assert s.settle("run:r", ScopeRecord(), deltas, index, 10_000) == []


def test_a_forecast_that_throttles_holds_the_scope_at_throttle_while_the_warning_is_up():
    index = BudgetIndex([budget(scope="agent:*", limit=100_000, forecast={"warn_before_ms": 1_200_000,
                                                                          "action": "throttle"})])
    s, record, out = settler(), ScopeRecord(), []
    for t in range(0, 900_000, 10_000):  # 1000 tokens per 10 s: the limit at ~16.7 min
        out += s.settle("agent:a", record, [Delta("agent:a", t, 1000, events=1, last_event_id=f"e{t}")], index, t)
    alerts, states = decoded(out)
    assert [a["kind"] for a in alerts] == ["forecast"]
    assert alerts[0]["eta_p10"] <= alerts[0]["eta_p50"]
    assert states[0]["state"] == "throttle" and states[0]["reason"].startswith("forecast:")
    shown = ForecastDetector().forecasts(record, index.for_scope("agent:a"), 890_000)["b"]
    assert shown["method"] == "burn rate" and shown["burn_rate_per_hour"] > 0 and shown["projected"] > 100_000
    plain = BudgetIndex([budget(scope="agent:*", id="plain")]).for_scope("agent:a")
    assert ForecastDetector().forecasts(record, plain, 890_000)["plain"]["method"] == "window average"


def test_a_spike_alert_names_its_factor_and_baseline():
    index = BudgetIndex([budget(scope="agent:*", spike={"factor": 3.0, "baseline_ms": 600_000, "action": "alert"})])
    s, record, out = settler(), ScopeRecord(), []
    for t in range(0, 900_000, 1000):
        tokens = 100 if t < 840_000 else 1000
        out += s.settle("agent:a", record, [Delta("agent:a", t, tokens, events=1)], index, t)
    alerts, _ = decoded(out)
    assert [a["kind"] for a in alerts] == ["spike"]
    assert alerts[0]["factor"] >= 3 and 300_000 < alerts[0]["baseline_per_hour"] < 400_000


def ramp_alerts(batches):
    """The integration test's ramp (an event every 200 ms, tokens growing by 3 per event, limit
    30k on a 1-minute window) settled in `batches` (lists of event indexes), as the worker would."""
    minute = parse_window("1m")
    index = BudgetIndex([budget(scope="agent:*", window="1m", limit=30_000,
                                forecast={"warn_before_ms": 20_000, "action": "alert"})])
    s = Settler({minute.name: minute}, Counter(), Signer("k1", b"k" * 32, "unit"), [ForecastDetector()])
    record, out = ScopeRecord(), []
    for batch in batches:
        deltas: list[Delta] = []
        for k in batch:
            t = k * 200
            if deltas and deltas[-1].second_ms == t - t % 1000:
                deltas[-1].input_tokens += 10 + 3 * k
                deltas[-1].events += 1
            else:
                deltas.append(Delta("agent:r", t - t % 1000, 10 + 3 * k, events=1, last_event_id=f"e{k}"))
        out += s.settle("agent:r", record, deltas, index, batch[-1] * 200)
    return [{k: a[k] for k in ("created_at", "spent", "eta_p10", "eta_p50", "eta_p90")}
            for a in decoded(out)[0] if a["kind"] == "forecast"]


def test_a_ramps_warning_depends_on_event_time_only_not_on_how_batches_cut_its_seconds():
    breach = 27_600  # the 138th event brings the spend to 30k
    one_by_one = ramp_alerts([[k] for k in range(139)])
    by_second = ramp_alerts([list(range(k, k + 5)) for k in range(0, 139, 5)])
    uneven = ramp_alerts([list(range(k, min(k + 3, 139))) for k in range(0, 139, 3)])
    catching_up = ramp_alerts([list(range(139))])  # a worker behind: the warning and the breach in one batch
    assert len(one_by_one) == 1 and one_by_one == by_second == uneven == catching_up
    alert = one_by_one[0]
    assert alert["created_at"] < breach and alert["eta_p10"] <= breach <= alert["eta_p90"]


def test_a_sweep_at_the_workers_clock_neither_drops_a_catch_up_spike_nor_holds_a_silent_one():
    index = BudgetIndex([budget(scope="agent:*", spike={"factor": 3.0, "baseline_ms": 600_000, "action": "throttle"})])
    s, record, out = settler(), ScopeRecord(), []
    clock = 5_000_000  # the worker's clock: it restarted far behind the stream's event time

    def usage(start: int, stop: int, tokens: int) -> None:
        for t in range(start, stop, 1000):
            out.extend(s.settle("agent:a", record, [Delta("agent:a", t, tokens, events=1)], index, clock))

    usage(0, 840_000, 100)
    s.settle("agent:a", record, [], index, clock)  # the sweep after the restart
    usage(840_000, 900_000, 1000)  # the backlog it catches up on holds a spike
    alerts, states = decoded(out)
    assert [a["kind"] for a in alerts] == ["spike"] and states[-1]["state"] == "throttle"
    swept = s.settle("agent:a", record, [], index, clock + 1000)  # silent for the last minute of its clock
    assert [c["state"] for c in decoded(swept)[1]] == ["allow"]
