"""Each record stored once: identity lookups, insert dedup tokens, rollups equal the raw table."""

from __future__ import annotations

import random
import time
import uuid

from tests.history_helpers import chdb_settings, history  # noqa: F401 - fixtures
from tokenfuse.history import rows
from tokenfuse.history.store import Pending, write
from tokenfuse.usage.pricing import PriceCatalog

CATALOG = PriceCatalog.load()
DAY = 86_400_000
T0 = int(time.time() * 1000) // DAY * DAY - 4 * DAY  # recent: minute rollups expire after 35 days


def event(agent="bot", tokens=100, when=T0, **extra):
    return {"event_id": str(uuid.uuid4()), "event_time": when, "org": "acme", "team": "search", "agent": agent,
            "run": None, "user": None, "model": "gpt-4o-mini", "provider": "openai", "input_tokens": tokens,
            "output_tokens": tokens // 2, "cached_tokens": 0, "cost_micro_usd": tokens, "tags": {}, **extra}


def pending_usage(events, topic="t.usage", partition=0, first_offset=0):
    p = Pending(rows.USAGE)
    for n, e in enumerate(events):
        p.add(rows.usage_row(e, CATALOG, partition, first_offset + n), topic, partition, first_offset + n)
    return p


def count(h, sql="SELECT count() FROM usage_events"):
    return h.select(sql).rows[0][0]


def test_a_reread_batch_and_a_replayed_event_id_are_stored_once(history):
    events = [event(tokens=n + 1) for n in range(50)]
    assert write(history, pending_usage(events)) == (50, 0)
    # The sink crashed before committing: the same records come again, in a larger batch.
    extra = [event(tokens=1000)]
    assert write(history, pending_usage(events + extra)) == (1, 50)
    # An SDK replays its spool later: same event_ids at other offsets, another partition.
    assert write(history, pending_usage(events[:10], partition=1, first_offset=900)) == (0, 10)
    assert count(history) == 51
    assert count(history, "SELECT uniqExact(event_id) FROM usage_events") == 51
    assert count(history, "SELECT sum(input_tokens) FROM usage_events") == sum(range(1, 51)) + 1000


def test_duplicates_inside_one_batch_are_stored_once(history):
    e = event()
    assert write(history, pending_usage([e, e, dict(e)])) == (1, 2)
    assert count(history) == 1


def test_a_retried_insert_with_the_same_offsets_is_dropped_by_clickhouse(history):
    """The token path alone: the identity lookup is bypassed by inserting directly, as when the
    read could not see the first attempt (a lagging replica)."""
    first = [event() for _ in range(5)]
    p = pending_usage(first)
    batch = list(p.rows.values())
    history.insert("usage_events", batch, rows.USAGE.columns, p.dedup_token())
    history.insert("usage_events", batch, rows.USAGE.columns, p.dedup_token())
    assert count(history) == 5
    # Other events that aggregate to the very same rollup rows: counted, not mistaken for a retry.
    other = pending_usage([dict(e, event_id=str(uuid.uuid4())) for e in first], first_offset=5)
    assert other.dedup_token() != p.dedup_token()
    history.insert("usage_events", list(other.rows.values()), rows.USAGE.columns, other.dedup_token())
    assert count(history) == 10
    assert count(history, "SELECT sum(events) FROM usage_by_minute WHERE scope = 'global'") == 10


def test_alerts_control_and_budgets_are_stored_once_by_identity(history):
    alert = {"alert_id": "b1|agent:x|0|100", "kind": "threshold", "scope": "agent:x", "budget_id": "b1",
             "threshold_percent": 100, "action": "block", "metric": "total_tokens", "spent": 10, "limit": 5,
             "window_start": T0, "window_end": T0 + 3_600_000, "event_id": "e", "created_at": T0, "message": ""}
    state = {"scope": "agent:x", "state": "block", "budget_id": "b1", "reason": "", "metric": None, "spent": 10,
             "limit": 5, "window_start": T0, "until": T0 + 1, "throttle_delay_ms": None, "issued_at": T0,
             "key_id": "default"}
    for _ in range(2):  # the same records twice (re-read after a crash)
        for table, row, offset in ((rows.ALERTS, rows.alert_row(alert), 7),
                                   (rows.CONTROL, rows.control_row(state, True, 0, 3), 3),
                                   (rows.BUDGETS, rows.budget_row({"id": "b1", "deleted": True, "updated_at": T0}, 1, 4, T0), 4)):
            p = Pending(table)
            p.add(row, "t.x", 0, offset)
            write(history, p)
    for table in ("alerts", "control_changes", "budgets_history"):
        assert count(history, f"SELECT count() FROM {table}") == 1, table


def test_rollups_equal_aggregates_over_the_raw_table(history):
    rng = random.Random(7)
    agents, teams, models = ["a1", "a2", "a3"], ["search", "ads"], ["gpt-4o-mini", "claude-sonnet-4", "mystery-1"]
    batches = []
    for b in range(6):
        batch = []
        for _ in range(300):
            extra = {"run": rng.choice([None, "", "r1", "r2"]), "user": rng.choice([None, "u1"]),
                     "tags": rng.choice([{}, {"env": "prod"}, {"env": "dev", "app": "x"}]),
                     "cost_micro_usd": rng.choice([None, rng.randrange(0, 5000)])}
            batch.append(event(agent=rng.choice(agents), tokens=rng.randrange(1, 10_000),
                               when=T0 + rng.randrange(0, 3 * 86_400_000), team=rng.choice(teams),
                               model=rng.choice(models), **extra))
        batches.append(batch)
        write(history, pending_usage(batch, first_offset=b * 1000))
    # The same scope keys as the worker's (tokenfuse.usage.scopes.event_scopes), computed over the raw table.
    # (Runs are not rolled up: reports read them from the raw table.)
    raw_scopes = """arrayConcat(['global', 'org:' || org, 'team:' || org || '/' || team, 'agent:' || agent,
        'model:' || model], if(ifNull(user, '') = '', [], ['user:' || assumeNotNull(user)]),
        arrayMap((k, v) -> 'tag:' || k || '=' || v, mapKeys(tags), mapValues(tags)))"""
    for table, bucket in (("usage_by_minute", "toStartOfMinute"), ("usage_by_hour", "toStartOfHour"),
                          ("usage_by_day", "toStartOfDay")):
        rolled = history.select(
            f"SELECT scope, bucket, provider, model, sum(events), sum(input_tokens), sum(output_tokens), "
            f"sum(cached_tokens), sum(cost_micro_usd) FROM {table} GROUP BY ALL ORDER BY ALL").rows
        raw = history.select(
            f"SELECT arrayJoin({raw_scopes}) AS scope, toDateTime({bucket}(event_time), 'UTC') AS bucket, provider, "
            f"model, count(), sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cost_micro_usd) "
            f"FROM usage_events GROUP BY ALL ORDER BY ALL").rows
        assert rolled == raw, table
        assert len(rolled) > 50
    total = sum(CATALOG.cost(e).micro_usd for batch in batches for e in batch)
    assert history.select("SELECT sum(cost_micro_usd) FROM usage_by_day WHERE scope = 'global'").rows[0][0] == total
    sources = dict(history.select("SELECT cost_source, count() FROM usage_events GROUP BY ALL").rows)
    assert set(sources) == {"event", "catalog", "fallback", "underreported"}


def test_a_self_reported_cost_is_stored_next_to_the_catalog_cost_and_the_larger_counts(history):
    cheap = event(tokens=50_000_000, cost_micro_usd=0, event_id="cheap")  # 0 USD for 50M tokens
    honest = event(tokens=1000, cost_micro_usd=10_000, event_id="honest")
    unpriced = event(tokens=1000, cost_micro_usd=None, event_id="unpriced")
    write(history, pending_usage([cheap, honest, unpriced]))
    stored = history.select("SELECT event_id, cost_micro_usd, cost_source, reported_cost_micro_usd, "
                            "catalog_cost_micro_usd FROM usage_events ORDER BY event_id").rows
    listed = CATALOG.cost({**cheap, "cost_micro_usd": None}).micro_usd
    assert listed > 10_000_000  # 50M in + 25M out tokens of gpt-4o-mini: about 22.5 USD
    assert stored == [("cheap", listed, "underreported", 0, listed),
                      ("honest", 10_000, "event", 10_000, CATALOG.cost({**honest, "cost_micro_usd": None}).micro_usd),
                      ("unpriced", CATALOG.cost(unpriced).micro_usd, "catalog", None, CATALOG.cost(unpriced).micro_usd)]
