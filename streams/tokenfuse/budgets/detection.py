"""The `forecast:`, `loop:` and `spike:` settings of a budget (optional, each a mapping):

    forecast: {warn_before: 30m, action: alert}          # action: alert | warn | throttle
    loop:     {repeats: 5, within: 60s, action: block, per: run}   # action: alert | throttle | block; per: run | agent
    spike:    {factor: 3, baseline: 1h, action: alert}   # action: alert | warn | throttle | block

Every key is optional; an empty mapping (`loop: {}`) takes the defaults shown in DEFAULTS.
Problems go to the file's Problems as `file:line: budgets[i].loop.repeats: message`.
"""

from __future__ import annotations

from typing import Any, Callable

import yaml

from tokenfuse.config.yamlnodes import Problems, decimal_value, describe, mapping, unknown_keys, value
from tokenfuse.usage.windows import parse_duration_ms

ACTIONS = {"forecast": ("alert", "warn", "throttle"), "loop": ("alert", "throttle", "block"),
           "spike": ("alert", "warn", "throttle", "block")}
DEFAULTS: dict[str, dict[str, Any]] = {
    "forecast": {"warn_before": "30m", "action": "alert"},
    "loop": {"repeats": 5, "within": "60s", "action": "alert", "per": "run"},
    "spike": {"factor": 3, "baseline": "1h", "action": "alert"},
}
MAX_LOOP_WITHIN_MS = 3_600_000
MIN_SPIKE_BASELINE_MS, MAX_SPIKE_BASELINE_MS = 600_000, 86_400_000
# The Avro field name of each duration setting.
_MS = {"warn_before": "warn_before_ms", "within": "within_ms", "baseline": "baseline_ms"}


def parse_detection(fields: dict[str, tuple[yaml.Node, yaml.Node]], path: str, problems: Problems,
                    window_ms: int | None, scope: str | None) -> dict[str, dict[str, Any] | None]:
    """The budget record's `forecast`, `loop` and `spike` fields (None where absent).
    `window_ms`: the budget window's length, None for a rolling window (no forecast there).
    A loop is counted on the budget's own scope: `per: run` needs a run scope (`run:*`), `per:
    agent` an agent scope; `per` defaults to the scope's kind."""
    out: dict[str, dict[str, Any] | None] = {"forecast": None, "loop": None, "spike": None}
    for name in out:
        if name not in fields:
            continue
        node = fields[name][1]
        where = f"{path}.{name}"
        settings = mapping(node, where, problems)
        if settings is None:
            continue
        unknown_keys(settings, tuple(DEFAULTS[name]), where, problems)
        before = len(problems)
        defaults = dict(DEFAULTS[name])
        kind = (scope or "").partition(":")[0]
        if name == "loop" and kind in ("run", "agent"):
            defaults["per"] = kind
        parsed = {key: _setting(name, key, settings.get(key, (None, None))[1], default, f"{where}.{key}", problems)
                  for key, default in defaults.items()}
        if name == "loop" and scope is not None and parsed["per"] is not None and parsed["per"] != kind:
            problems.add(settings["per"][1] if "per" in settings else node, f"{where}.per",
                         f"loops per {parsed['per']} are counted on a {parsed['per']}:* budget, not on {scope!r}")
        if name == "forecast" and window_ms is None:
            problems.add(node, where, "a rolling window has no end to forecast; use a tumbling or calendar window")
        elif name == "forecast" and parsed["warn_before"] is not None and parsed["warn_before"] >= window_ms:
            problems.add(settings["warn_before"][1] if "warn_before" in settings else node, f"{where}.warn_before",
                         "must be shorter than the budget's window")
        if len(problems) == before:
            out[name] = {_MS.get(key, key): v for key, v in parsed.items()}
    return out


def _setting(name: str, key: str, node: yaml.Node | None, default: Any, where: str, problems: Problems) -> Any:
    checks: dict[str, Callable[[yaml.Node, str, Problems], Any]] = {
        "warn_before": _duration(1_000, None), "within": _duration(1_000, MAX_LOOP_WITHIN_MS),
        "baseline": _duration(MIN_SPIKE_BASELINE_MS, MAX_SPIKE_BASELINE_MS), "repeats": _repeats,
        "factor": _factor, "per": _choice(("run", "agent")), "action": _choice(ACTIONS[name]),
    }
    if node is None:
        return parse_duration_ms(default) if key in _MS else default
    return checks[key](node, where, problems)


def _duration(low: int, high: int | None) -> Callable[[yaml.Node, str, Problems], int | None]:
    def check(node: yaml.Node, where: str, problems: Problems) -> int | None:
        raw = value(node)
        try:
            ms = parse_duration_ms(raw) if isinstance(raw, str) else None
        except ValueError:
            ms = None
        if ms is None:
            problems.add(node, where, f"must be a duration like 30s, 5m or 1h, got {describe(node)}")
        elif ms < low or (high is not None and ms > high):
            bound = f"from {low // 1000}s" + (f" to {high // 1000}s" if high else "")
            problems.add(node, where, f"{raw} is out of range ({bound})")
            ms = None
        return ms
    return check


def _repeats(node: yaml.Node, where: str, problems: Problems) -> int | None:
    raw = value(node)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 2 <= raw <= 1000:
        problems.add(node, where, f"must be an integer from 2 to 1000, got {describe(node)}")
        return None
    return raw


def _factor(node: yaml.Node, where: str, problems: Problems) -> float | None:
    number = decimal_value(node)
    if number is None or not 1 < number <= 1000:
        problems.add(node, where, f"must be a number above 1 (at most 1000), got {describe(node)}")
        return None
    return float(number)


def _choice(allowed: tuple[str, ...]) -> Callable[[yaml.Node, str, Problems], str | None]:
    def check(node: yaml.Node, where: str, problems: Problems) -> str | None:
        raw = value(node)
        if raw not in allowed:
            problems.add(node, where, f"{describe(node)} is not one of {', '.join(allowed)}")
            return None
        return raw
    return check
