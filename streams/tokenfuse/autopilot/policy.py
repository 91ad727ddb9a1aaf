"""The autopilot's policy file, next to the budgets file: which budgets it may adjust, within what.

Every problem is reported at once as `file:line: autopilot[i].field: message`. The file:

    autopilot:
      - budget: team-search-daily     # a budget id, or a pattern with * over ids (first rule that matches wins)
        unit: usd                     # optional: floor/cap/max_step in USD (cost budgets); default the budget's units
        floor: 50                     # the limit never goes below...
        cap: 400                      # ...nor above
        max_step: 100                 # no single change moves the limit by more
        cooldown: 1h                  # at least this long between two changes of the budget
        parent: org-acme-daily        # optional: raises are funded by its headroom (limit - its children's limits)
        raise: {margin: 10, expires: window_end}   # on a forecast breach: to the projected spend + 10%
        shrink: {idle_windows: 3, idle_below: 50}  # after 3 windows under 50% of the limit: toward the recommendation
        mode: approve                 # dry-run | approve | auto
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml

from tokenfuse.config.yamlnodes import Problems, compose_file, decimal_value, describe, mapping, record_fields, top_list, unknown_keys, value
from tokenfuse.usage.windows import parse_duration_ms

MODES = ("dry-run", "approve", "auto")
UNITS = ("usd",)
EXPIRES = ("window_end", "never")
FIELDS = ("budget", "unit", "floor", "cap", "max_step", "cooldown", "parent", "raise", "shrink", "mode")
REQUIRED = ("budget", "floor", "cap", "max_step", "cooldown", "mode")
RAISE_FIELDS = ("margin", "expires")
SHRINK_FIELDS = ("idle_windows", "idle_below")
_PATTERN = re.compile(r"^[A-Za-z0-9._:*-]+$")
_ID = re.compile(r"^[A-Za-z0-9._:-]+$")
MAX_AMOUNT = 2**63 - 1


@dataclass(frozen=True)
class Raise:
    margin_percent: int = 10  # over the forecast's projected spend
    expires: str = "window_end"  # or "never": the raise stays


@dataclass(frozen=True)
class Shrink:
    idle_windows: int = 3
    idle_below_percent: int = 50


@dataclass(frozen=True)
class Rule:
    """One policy entry. floor, cap and max_step are in the budget's stored units once `unit`
    is applied (`in_units`); `line` is where it was written (shown with its decisions)."""

    budget: str  # an id or a pattern
    floor: int
    cap: int
    max_step: int
    cooldown_ms: int
    mode: str
    parent: str | None = None
    raise_: Raise | None = None
    shrink: Shrink | None = None
    unit: str | None = None
    line: int = 0

    def matches(self, budget_id: str) -> bool:
        return fnmatch.fnmatchcase(budget_id, self.budget)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    source: str = ""

    def rule_for(self, budget_id: str) -> Rule | None:
        return next((r for r in self.rules if r.matches(budget_id)), None)


def load_policy(path: Path, source: str | None = None) -> Policy:
    source = source or str(path)
    return parse_policy(compose_file(path, source), source)


def parse_policy(root: yaml.Node | None, source: str) -> Policy:
    problems = Problems(source)
    rules: list[Rule] = []
    first_line: dict[str, int] = {}
    for i, node in top_list(root, "autopilot", problems):
        rule = _rule(node, f"autopilot[{i}]", problems, first_line)
        if rule is not None:
            rules.append(rule)
    problems.raise_if_any("autopilot policy")
    return Policy(tuple(rules), source)


def _rule(node: yaml.Node, path: str, problems: Problems, first_line: dict[str, int]) -> Rule | None:
    before = len(problems)
    fields = record_fields(node, path, problems, FIELDS, REQUIRED)
    if fields is None:
        return None
    budget = _text(fields, "budget", path, problems, _PATTERN, "letters, digits, . _ : - and *")
    if budget is not None:
        where = fields["budget"][1]
        if budget in first_line:
            problems.add(where, f"{path}.budget", f"{budget!r} has a rule already (first at line {first_line[budget]})")
        else:
            first_line[budget] = where.start_mark.line + 1
    parent = _text(fields, "parent", path, problems, _ID, "letters, digits and . _ : - (one budget id)")
    if parent is not None and budget is not None and fnmatch.fnmatchcase(parent, budget):
        problems.add(fields["parent"][1], f"{path}.parent", f"{parent!r} is matched by this rule's own budget pattern")
    unit = _choice(fields, "unit", path, problems, UNITS, None)
    mode = _choice(fields, "mode", path, problems, MODES, None)
    floor, cap, step = (_amount(fields, name, path, problems, unit, allow_zero=name == "floor")
                        for name in ("floor", "cap", "max_step"))
    if floor is not None and cap is not None and floor > cap:
        problems.add(fields["cap"][1], f"{path}.cap", f"must be at least the floor ({_show(fields['floor'][1])})")
    cooldown = _duration(fields, "cooldown", path, problems)
    raise_ = _raise(fields, path, problems)
    shrink = _shrink(fields, path, problems)
    if "raise" not in fields and "shrink" not in fields:
        problems.add(node, path, "needs a trigger: 'raise', 'shrink' or both")
    if len(problems) > before:
        return None
    return Rule(budget=budget, floor=floor, cap=cap, max_step=step, cooldown_ms=cooldown, mode=mode, parent=parent,
                raise_=raise_, shrink=shrink, unit=unit, line=node.start_mark.line + 1)


def _text(fields, name: str, path: str, problems: Problems, pattern: re.Pattern, allowed: str) -> str | None:
    if name not in fields:
        return None
    node = fields[name][1]
    raw = value(node)
    if not isinstance(raw, str) or not raw:
        problems.add(node, f"{path}.{name}", f"must be a string, got {describe(node)}")
        return None
    if not pattern.match(raw):
        problems.add(node, f"{path}.{name}", f"{raw!r} may only contain {allowed}")
        return None
    return raw


def _choice(fields, name: str, path: str, problems: Problems, choices: tuple[str, ...], default: str | None):
    if name not in fields:
        return default
    node = fields[name][1]
    raw = value(node)
    if raw not in choices:
        problems.add(node, f"{path}.{name}", f"{describe(node)} is not one of {', '.join(choices)}")
        return None
    return raw


def _amount(fields, name: str, path: str, problems: Problems, unit: str | None, *, allow_zero: bool) -> int | None:
    """A whole number in the budget's units, or with `unit: usd` a USD amount (exact micro-USD)."""
    if name not in fields:
        return None
    node = fields[name][1]
    number = decimal_value(node)
    low = "a non-negative" if allow_zero else "a positive"
    if number is None or number < 0 or (number == 0 and not allow_zero):
        problems.add(node, f"{path}.{name}", f"must be {low} number, got {describe(node)}")
        return None
    if unit == "usd":
        number = number * 1_000_000
        if number % 1:
            problems.add(node, f"{path}.{name}", f"{_show(node)} USD has more than 6 decimals (1 micro-USD)")
            return None
    elif number % 1:
        problems.add(node, f"{path}.{name}", f"must be a whole number in the budget's units (or set unit: usd), "
                                             f"got {_show(node)}")
        return None
    if number > MAX_AMOUNT:
        problems.add(node, f"{path}.{name}", f"{_show(node)} is too large")
        return None
    return int(number)


def _duration(fields, name: str, path: str, problems: Problems) -> int | None:
    if name not in fields:
        return None
    node = fields[name][1]
    raw = value(node)
    try:
        if isinstance(raw, str):
            return parse_duration_ms(raw)
    except ValueError:
        pass
    problems.add(node, f"{path}.{name}", f"must be a duration like 30m, 1h or 1d, got {describe(node)}")
    return None


def _raise(fields, path: str, problems: Problems) -> Raise | None:
    sub = _section(fields, "raise", path, RAISE_FIELDS, problems)
    if sub is None:
        return None
    margin = _percent(sub, "margin", f"{path}.raise", problems, 0, 1000, Raise.margin_percent)
    expires = _choice(sub, "expires", f"{path}.raise", problems, EXPIRES, Raise.expires)
    return Raise(margin, expires) if margin is not None and expires is not None else None


def _shrink(fields, path: str, problems: Problems) -> Shrink | None:
    sub = _section(fields, "shrink", path, SHRINK_FIELDS, problems)
    if sub is None:
        return None
    windows = _percent(sub, "idle_windows", f"{path}.shrink", problems, 1, 365, Shrink.idle_windows)
    below = _percent(sub, "idle_below", f"{path}.shrink", problems, 1, 100, Shrink.idle_below_percent)
    return Shrink(windows, below) if windows is not None and below is not None else None


def _section(fields, name: str, path: str, allowed: tuple[str, ...], problems: Problems):
    if name not in fields:
        return None
    node = fields[name][1]
    if isinstance(node, yaml.ScalarNode) and value(node) in (True, None):
        return {}  # `raise: true` or `raise:` = the defaults
    sub = mapping(node, f"{path}.{name}", problems)
    if sub is not None:
        unknown_keys(sub, allowed, f"{path}.{name}", problems)
    return sub


def _percent(fields, name: str, path: str, problems: Problems, low: int, high: int, default: int) -> int | None:
    if name not in fields:
        return default
    node = fields[name][1]
    raw = value(node)
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        problems.add(node, f"{path}.{name}", f"must be an integer from {low} to {high}, got {describe(node)}")
        return None
    return raw


def _show(node: yaml.Node) -> str:
    number = decimal_value(node)
    return str(number) if isinstance(number, Decimal) else describe(node)
