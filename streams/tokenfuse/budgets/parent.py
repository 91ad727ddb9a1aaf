"""Keeping recommended child budgets under their parent budget's limit.

A parent is a budget with the children's metric and window whose scope contains them: `global`
contains every scope, an org (`org:acme`, or `org:*` for each org) contains its teams
(`team:acme/...`). Other scope keys (agents, users, models, tags) carry no parent value, so only
`global` can bound them. When the children's limits add up to more than the parent's, they are
scaled proportionally with the largest-remainder method: the sum becomes the parent limit
exactly, every child keeps at least 1 and never gets more than it was recommended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenfuse.apportion import largest_remainder
from tokenfuse.errors import TokenfuseError


class ParentError(TokenfuseError):
    """The parent budget asked for cannot bound the recommended scopes."""


@dataclass(frozen=True)
class Parent:
    """The limit a group of children must fit under, and where it comes from."""

    key: str  # the parent scope value, e.g. org:acme
    limit: int
    source: str  # e.g. "budget org-daily" or "--parent-limit"


def parent_key(child: str, parent_scope: str) -> str | None:
    """The value of `parent_scope` that contains the scope key `child`, or None when `child`
    lies outside it (a team of another org); ParentError when no such relation exists."""
    if parent_scope == "global":
        return "global"
    kind, _, value = parent_scope.partition(":")
    child_kind, _, child_value = child.partition(":")
    if kind == "org" and child_kind == "team":
        org = f"org:{child_value.split('/', 1)[0]}"
        return org if value in ("*", org[4:]) else None
    raise ParentError(f"cannot tell which {parent_scope!r} contains {child!r}: a parent must be 'global', "
                      "or an org budget over team scopes")


def fit(limits: dict[str, int], parent_limit: int) -> dict[str, int]:
    """Children's limits scaled to sum to exactly `parent_limit` when they add up to more;
    unchanged otherwise. Each stays in [1, its recommended limit]."""
    if sum(limits.values()) <= parent_limit:
        return dict(limits)
    if len(limits) > parent_limit:
        raise ParentError(f"the parent limit {parent_limit} cannot give each of {len(limits)} scopes a limit of 1")
    names = sorted(limits)
    shares = largest_remainder(parent_limit, [limits[n] for n in names])
    for i, share in enumerate(shares):
        if share == 0:  # a tiny child whose quota rounded to nothing: take 1 from the largest
            largest = max(range(len(shares)), key=lambda j: (shares[j], -j))
            shares[largest] -= 1
            shares[i] = 1
    return dict(zip(names, shares))


def find_parents(budgets: dict[str, dict[str, Any]], children: list[str], metric: str, window: str,
                 timezone: str, wanted: str) -> list[tuple[dict[str, Any], dict[str, list[str]]]]:
    """The parent budget(s) and the children each contains, by parent key. `wanted` is a budget
    id, or `auto`: an org budget for team scopes if one exists, else a global one."""
    same = [b for b in budgets.values()
            if b["metric"] == metric and b["window"] == window and b["timezone"] == timezone]
    if wanted != "auto":
        budget = budgets.get(wanted)
        if budget is None:
            raise ParentError(f"--parent: no budget with id {wanted!r} in the budgets topic")
        if budget not in same:
            raise ParentError(f"--parent: budget {wanted!r} counts {budget['metric']} per {budget['window']} "
                              f"({budget['timezone']}), not {metric} per {window} ({timezone})")
        return [(budget, _contained(budget["scope"], children))]
    for kinds in (("org",), ("global",)):
        found = [b for b in sorted(same, key=lambda b: b["id"]) if b["scope"].partition(":")[0] in kinds]
        out = []
        for budget in found:
            try:
                groups = _contained(budget["scope"], children)
            except ParentError:
                continue
            if groups:
                out.append((budget, groups))
        if out:
            return out
    return []


def _contained(parent_scope: str, children: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for child in children:
        key = parent_key(child, parent_scope)
        if key is not None:
            groups.setdefault(key, []).append(child)
    return groups
