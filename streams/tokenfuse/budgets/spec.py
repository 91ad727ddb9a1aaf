"""Budgets as code: parse and validate a budgets YAML file into Budget records.

Every problem in the file is reported at once, each as `file:line: budgets[i].field: message`
(list indexes count from 0). The file:

    budgets:
      - id: run-daily-5usd          # unique, [A-Za-z0-9._:-]+
        scope: "run:*"              # see tokenfuse.usage.scopes; '*' = each value separately
        metric: cost_usd            # input_tokens | output_tokens | total_tokens | cost_micro_usd | cost_usd
        limit: 5                    # positive integer; for cost_usd a USD amount (up to 6 decimals)
        window: day                 # 1m..7d | day | month | rolling:<duration>
        timezone: Europe/Paris      # optional, default UTC (calendar windows)
        thresholds:                 # optional, default [{percent: 100, action: block}]
          - {percent: 80, action: warn}
          - {percent: 100, action: block}
        description: ...            # optional
        forecast: {warn_before: 30m, action: alert}           # optional: early warning (detection.py)
        loop: {repeats: 5, within: 60s, action: block, per: run}   # optional: loop detection
        spike: {factor: 3, baseline: 1h, action: alert}       # optional: spike detection

`cost_usd` is a convenience: the limit is converted exactly to micro-USD and the budget is stored
with metric `cost_micro_usd`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from tokenfuse.usage.scopes import validate_scope
from tokenfuse.budgets.detection import parse_detection
from tokenfuse.usage.windows import WindowSpec, parse_window
from tokenfuse.config.yamlnodes import (Problems, compose_file, decimal_value, describe, mapping, record_fields, sequence, top_list,
                                        unknown_keys, value)

METRICS = ("input_tokens", "output_tokens", "total_tokens", "cost_micro_usd", "cost_usd")
ACTIONS = ("alert", "warn", "throttle", "block")
FIELDS = ("id", "scope", "metric", "window", "timezone", "limit", "thresholds", "description", "forecast", "loop",
          "spike")
REQUIRED = ("id", "scope", "metric", "window", "limit")
DEFAULT_THRESHOLDS = [{"percent": 100, "action": "block"}]
MAX_PERCENT = 1000
MAX_LIMIT = 2**63 - 1  # Avro long
_ID = re.compile(r"^[A-Za-z0-9._:-]+$")


def load_budgets(path: Path, source: str | None = None, *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Budget records (ready for codec("Budget").encode) from a file; ConfigError lists every problem.
    `source` is the file name used in messages (default: the path as given)."""
    source = source or str(path)
    return parse_budgets(compose_file(path, source), source, now_ms=now_ms)


def parse_budgets(root: yaml.Node | None, source: str, *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Budget records from a composed YAML document (see yamlnodes.compose_text)."""
    problems = Problems(source)
    updated_at = int(time.time() * 1000) if now_ms is None else now_ms
    budgets: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    for i, node in top_list(root, "budgets", problems):
        budget = _budget(node, f"budgets[{i}]", problems, first_line)
        if budget is not None:
            budgets.append({**budget, "updated_at": updated_at})
    problems.raise_if_any("budgets")
    return budgets


def _budget(node: yaml.Node, path: str, problems: Problems, first_line: dict[str, int]) -> dict[str, Any] | None:
    before = len(problems)
    fields = record_fields(node, path, problems, FIELDS, REQUIRED)
    if fields is None:
        return None

    def text(name: str, default: str | None = None) -> str | None:
        if name not in fields:
            return default
        raw = value(fields[name][1])
        if not isinstance(raw, str) or (name != "description" and not raw):
            problems.add(fields[name][1], f"{path}.{name}", f"must be a string, got {describe(fields[name][1])}")
            return None
        return raw

    budget_id, scope, metric = text("id"), text("scope"), text("metric")
    window, timezone, description = text("window"), text("timezone", "UTC"), text("description", "")
    if budget_id is not None:
        id_node = fields["id"][1]
        if not _ID.match(budget_id):
            problems.add(id_node, f"{path}.id", f"{budget_id!r} may only contain letters, digits and . _ : -")
        elif budget_id in first_line:
            problems.add(id_node, f"{path}.id", f"duplicate id {budget_id!r} (first at line {first_line[budget_id]})")
        else:
            first_line[budget_id] = id_node.start_mark.line + 1
    if scope is not None and (why := validate_scope(scope)):
        problems.add(fields["scope"][1], f"{path}.scope", why)
    if metric is not None and metric not in METRICS:
        problems.add(fields["metric"][1], f"{path}.metric", f"{metric!r} is not one of {', '.join(METRICS)}")
    if timezone is not None and not _known_timezone(timezone):
        problems.add(fields["timezone"][1], f"{path}.timezone",
                     f"unknown time zone {timezone!r} (use an IANA name like Europe/Paris)")
        timezone = None
    spec = None
    if window is not None:
        try:
            spec = parse_window(window, timezone or "UTC")
        except ValueError as exc:
            problems.add(fields["window"][1], f"{path}.window", str(exc))
    limit = _limit(fields["limit"][1], f"{path}.limit", metric, problems) if "limit" in fields else None
    thresholds = (_thresholds(fields["thresholds"][1], f"{path}.thresholds", problems)
                  if "thresholds" in fields else DEFAULT_THRESHOLDS)
    detection = parse_detection(fields, path, problems, _shortest_ms(spec), scope)
    if len(problems) > before:
        return None
    return {"id": budget_id, "scope": scope, "metric": "cost_micro_usd" if metric == "cost_usd" else metric,
            "window": window, "timezone": timezone, "limit": limit, "thresholds": thresholds,
            "description": description, **detection}


def _shortest_ms(spec: WindowSpec | None) -> int | None:
    """The shortest length a window of `spec` can have; None for rolling (or unknown) windows."""
    if spec is None or spec.re_arms:
        return None
    if spec.kind == "calendar":  # a day may have 23 hours, a month 28 days
        return 86_400_000 - 3_600_000 if spec.horizon_ms <= 86_400_000 else 28 * 86_400_000
    return spec.horizon_ms


def _known_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _limit(node: yaml.Node, path: str, metric: str | None, problems: Problems) -> int | None:
    """A positive integer; for cost_usd a USD amount converted exactly to micro-USD."""
    number = decimal_value(node)
    if metric == "cost_usd":
        if number is None or number <= 0:
            problems.add(node, path, f"must be a positive USD amount, got {describe(node)}")
            return None
        micro = number * 1_000_000
        if micro % 1:
            problems.add(node, path, f"{number} USD has more than 6 decimals (1 micro-USD)")
            return None
        number = micro
    elif number is None or number <= 0 or number % 1:
        problems.add(node, path, f"must be a positive integer, got {describe(node)}")
        return None
    if number > MAX_LIMIT:
        problems.add(node, path, f"{number} is too large")
        return None
    return int(number)


def _thresholds(node: yaml.Node, path: str, problems: Problems) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    previous: int | None = None
    for i, item in sequence(node, path, problems):
        where = f"{path}[{i}]"
        fields = mapping(item, where, problems)
        if fields is None:
            continue
        unknown_keys(fields, ("percent", "action"), where, problems)
        percent = action = None
        for name in ("percent", "action"):
            if name not in fields:
                problems.add(item, where, f"missing required field {name!r}")
        if "percent" in fields:
            pnode = fields["percent"][1]
            raw = value(pnode)
            if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_PERCENT:
                problems.add(pnode, f"{where}.percent", f"must be an integer from 1 to {MAX_PERCENT}, got {describe(pnode)}")
            elif previous is not None and raw <= previous:
                problems.add(pnode, f"{where}.percent",
                             f"{raw} must be greater than the previous threshold's {previous} (strictly increasing)")
            else:
                percent = previous = raw
        if "action" in fields:
            anode = fields["action"][1]
            raw = value(anode)
            if raw not in ACTIONS:
                problems.add(anode, f"{where}.action", f"{describe(anode)} is not one of {', '.join(ACTIONS)}")
            else:
                action = raw
        out.append({"percent": percent, "action": action})
    if isinstance(node, yaml.SequenceNode) and not node.value:
        problems.add(node, path, "must list at least one threshold (or be left out for 100% block)")
    return out
