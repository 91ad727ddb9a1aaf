"""Shared cost in chargeback reports: whose spend is shared, and how it is allocated.

A source is a group of the report (e.g. `team:acme/platform`) or `untagged` (the usage no group
holds: events without the tag of `--by tag:KEY`, or without a user for `--by user`). Each
source's whole cost goes to its recipients (the `to` groups, by default every group that is not
a source), by one method:

- even: the same share each;
- proportional: in proportion to each recipient's own (direct) cost; recipients that spent
  nothing at all get even shares;
- fixed: the listed USD amounts, in file order, each capped by what is left of the source.

What a source cannot give (fixed amounts below its cost, or no recipient) stays unallocated and is
shown as such. Amounts are integer micro-USD split by largest remainder, so the charged amounts
and the unallocated rest add up to the ClickHouse total exactly. The file:

    shared:
      - source: team:acme/platform
        method: proportional            # even | proportional | fixed
        to: [team:acme/search, team:acme/ads]   # optional
      - source: untagged
        method: fixed
        amounts: {team:acme/search: 120.50, team:acme/ads: 80}   # USD, fixed only
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tokenfuse.apportion import even, largest_remainder
from tokenfuse.config.yamlnodes import Problems, compose_file, decimal_value, describe, mapping, sequence, \
    unknown_keys, value
from tokenfuse.history.reports import ReportError

UNTAGGED = "untagged"
METHODS = ("even", "proportional", "fixed")
_FIELDS = ("source", "method", "to", "amounts")


@dataclass(frozen=True)
class Rule:
    source: str
    method: str
    to: tuple[str, ...] = ()  # empty: every group that is not a source
    amounts: tuple[tuple[str, int], ...] = ()  # fixed: (recipient, micro-USD) in file order


@dataclass
class Allocation:
    """Per group: what it receives (+) or gives away (-); what no one received."""

    shared: dict[str, int] = field(default_factory=dict)
    unallocated: int = 0
    notes: list[str] = field(default_factory=list)


def allocate(direct: dict[str, int], rules: list[Rule]) -> Allocation:
    """Move each source's cost to its recipients. `direct` holds every group's own cost, the
    untagged usage under UNTAGGED. sum(direct) == sum(direct + shared) + unallocated."""
    out = Allocation({group: 0 for group in direct})
    sources = {rule.source for rule in rules}
    for rule in rules:
        cost = direct.get(rule.source, 0)
        out.shared[rule.source] = out.shared.get(rule.source, 0) - cost
        recipients = [g for g in (rule.to or sorted(direct)) if g not in sources and g != UNTAGGED]
        for group in recipients:
            out.shared.setdefault(group, 0)
        if not cost:
            continue
        if not recipients:
            out.unallocated += cost
            out.notes.append(f"{rule.source}: no group to share {cost} micro-USD with: unallocated")
            continue
        if rule.method == "fixed":
            left = cost
            for group, wanted in rule.amounts:
                given = min(wanted, left)
                out.shared[group] += given
                left -= given
            out.unallocated += left
            if left:
                out.notes.append(f"{rule.source}: {left} micro-USD beyond the fixed amounts: unallocated")
            continue
        shares = (even(cost, len(recipients)) if rule.method == "even"
                  else largest_remainder(cost, [direct.get(g, 0) for g in recipients]))
        for group, share in zip(recipients, shares):
            out.shared[group] += share
    return out


def rules_from_flags(sources: list[str], method: str) -> list[Rule]:
    if method not in ("even", "proportional"):
        raise ReportError("--allocate must be even or proportional (fixed amounts need --shared-config)")
    return [Rule(source, method) for source in sources]


def check(rules: list[Rule], prefix: str, by: str) -> None:
    """One ReportError naming every rule that cannot apply to groups of `prefix` (--by `by`)."""
    problems = []
    sources = [rule.source for rule in rules]
    for rule in rules:
        for group in (rule.source, *rule.to, *(g for g, _ in rule.amounts)):
            if group != UNTAGGED and not (group.startswith(prefix) and len(group) > len(prefix)):
                problems.append(f"{group!r} is not a group of --by {by} (they look like {prefix}...)")
        for group in (*rule.to, *(g for g, _ in rule.amounts)):
            if group in sources or group == UNTAGGED:
                problems.append(f"{group!r} is a shared source and cannot receive shared cost")
        if sources.count(rule.source) > 1:
            problems.append(f"{rule.source!r} is shared twice")
    if problems:
        raise ReportError("shared cost: " + "; ".join(dict.fromkeys(problems)))


def load_rules(path: Path) -> list[Rule]:
    """Rules from a YAML file; every problem reported at once as file:line: path: message."""
    source = str(path)
    problems = Problems(source)
    root = compose_file(path, source)
    rules: list[Rule] = []
    top = mapping(root, "", problems) if root is not None else None
    if root is None:
        problems.add(None, "", "the file is empty; expected a 'shared:' list")
    elif top is not None:
        unknown_keys(top, ("shared",), "", problems)
        if "shared" not in top:
            problems.add(root, "", "missing the 'shared:' list")
        else:
            for i, node in sequence(top["shared"][1], "shared", problems):
                rule = _rule(node, f"shared[{i}]", problems)
                if rule is not None:
                    rules.append(rule)
    problems.raise_if_any("shared cost")
    return rules


def _rule(node, path: str, problems: Problems) -> Rule | None:
    fields = mapping(node, path, problems)
    if fields is None:
        return None
    before = len(problems)
    unknown_keys(fields, _FIELDS, path, problems)
    for name in ("source", "method"):
        if name not in fields:
            problems.add(node, path, f"missing required field {name!r}")
    source = value(fields["source"][1]) if "source" in fields else None
    if "source" in fields and (not isinstance(source, str) or not source):
        problems.add(fields["source"][1], f"{path}.source", f"must be a group or 'untagged', got {describe(fields['source'][1])}")
    method = value(fields["method"][1]) if "method" in fields else None
    if "method" in fields and method not in METHODS:
        problems.add(fields["method"][1], f"{path}.method", f"{describe(fields['method'][1])} is not one of {', '.join(METHODS)}")
    to: list[str] = []
    if "to" in fields:
        for j, item in sequence(fields["to"][1], f"{path}.to", problems):
            if not isinstance(value(item), str) or not value(item):
                problems.add(item, f"{path}.to[{j}]", f"must be a group, got {describe(item)}")
            else:
                to.append(value(item))
    amounts = _amounts(fields, path, method, problems)
    if len(problems) > before:
        return None
    return Rule(source, method, tuple(to), tuple(amounts))


def _amounts(fields, path: str, method: object, problems: Problems) -> list[tuple[str, int]]:
    if method != "fixed":
        if "amounts" in fields:
            problems.add(fields["amounts"][0], f"{path}.amounts", "only a fixed method takes amounts")
        return []
    if "amounts" not in fields:
        problems.add(fields["method"][1], path, "a fixed method needs 'amounts' (USD per group)")
        return []
    out = []
    for group, (key_node, amount_node) in (mapping(fields["amounts"][1], f"{path}.amounts", problems) or {}).items():
        usd = decimal_value(amount_node)
        if usd is None or usd < 0 or (usd * 10**6) % 1:
            problems.add(amount_node, f"{path}.amounts.{group}",
                         f"must be a USD amount >= 0 with up to 6 decimals, got {describe(amount_node)}")
        else:
            out.append((group, int(usd * 10**6)))
    return out
