"""Exact integer apportionment (Hamilton's largest-remainder method).

Money is integer micro-USD everywhere: splitting an amount over weights must neither create nor
lose a micro-dollar, so shares are floors of the exact quotas and the micro-dollars left over go
to the largest remainders (ties to the earlier weight, so results are deterministic). Used by
shared-cost allocation (chargeback) and by fitting recommended budgets under a parent limit.
"""

from __future__ import annotations


def largest_remainder(total: int, weights: list[int]) -> list[int]:
    """Shares of `total` proportional to `weights`, summing to `total` exactly. Each share is the
    floor or the ceiling of its exact quota total*w/sum(w). All-zero weights split evenly."""
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("largest_remainder takes a non-negative total and weights")
    if not weights:
        if total:
            raise ValueError(f"cannot apportion {total} over no weights")
        return []
    if not any(weights):
        weights = [1] * len(weights)
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def even(total: int, count: int) -> list[int]:
    """`total` split over `count` parts differing by at most 1 (the first parts get the extra)."""
    return largest_remainder(total, [1] * count)
