"""The lease sizing rule (control/leases.py): the sum of caps never passes the limit, whatever
the settled spend says, and leases shrink as the budget runs out."""

from __future__ import annotations

import random

from tokenfuse.control.leases import size_grant


def test_a_lone_holder_gets_half_of_what_is_left_and_less_as_it_runs_out():
    first = size_grant(limit=50_000, settled=0, base=0, granted=0, cap=0, used=0, active=1)
    assert (first.cap, first.granted, first.remaining) == (25_000, 25_000, 25_000)
    second = size_grant(limit=50_000, settled=10_000, base=0, granted=first.granted, cap=first.cap, used=24_000, active=1)
    assert second.cap == 24_000 + 12_500 and second.granted == 36_500
    last = size_grant(limit=50_000, settled=0, base=0, granted=49_999, cap=49_999, used=49_999, active=3)
    assert (last.cap, last.remaining) == (50_000, 0)


def test_nothing_is_granted_once_the_settled_spend_or_the_caps_reach_the_limit():
    assert size_grant(50_000, settled=50_100, base=0, granted=10_000, cap=5000, used=5000, active=2).cap == 5000
    spent = size_grant(50_000, settled=0, base=20_000, granted=30_000, cap=8000, used=9000, active=2)
    assert (spent.cap, spent.granted, spent.remaining) == (8000, 30_000, 0)


def test_caps_never_go_down_and_their_sum_stays_within_the_limit_under_any_requests():
    rng = random.Random(7)
    for _ in range(200):
        limit, base = rng.randint(1, 100_000), rng.randint(0, 20_000)
        caps, granted, settled = {}, 0, base
        for _ in range(100):
            h = rng.randrange(5)
            used = caps.get(h, 0) + rng.randint(-50, 500)  # a holder may overshoot its cap by a call
            settled += rng.randint(0, 300)
            g = size_grant(limit, settled, base, granted, caps.get(h, 0), max(0, used), active=len(caps) or 1)
            assert g.cap >= caps.get(h, 0)
            granted, caps[h] = g.granted, g.cap
            assert granted == sum(caps.values())
            assert base + granted <= max(limit, base)
