"""Scope keys: which totals a usage event counts toward, and which scopes a budget targets.

Keys: `global`, `org:<org>`, `team:<org>/<team>`, `agent:<agent>`, `run:<run>`, `user:<user>`,
`model:<model>`, `tag:<key>=<value>`. A budget's scope may end in `*` ("each value separately"):
`agent:*`, `team:acme/*`, `tag:env=*`.
"""

from __future__ import annotations

from typing import Any

KINDS = ("global", "org", "team", "agent", "run", "user", "model", "tag")


def event_scopes(event: dict[str, Any]) -> list[str]:
    """Every scope key a (validated) UsageEvent counts toward."""
    keys = ["global", f"org:{event['org']}", f"team:{event['org']}/{event['team']}",
            f"agent:{event['agent']}", f"model:{event['model']}"]
    if event.get("run"):
        keys.append(f"run:{event['run']}")
    if event.get("user"):
        keys.append(f"user:{event['user']}")
    keys.extend(f"tag:{k}={v}" for k, v in sorted((event.get("tags") or {}).items()))
    return keys


def runtime_scopes(org: str, team: str, agent: str, run: str | None = None,
                   user: str | None = None, model: str | None = None) -> list[str]:
    """The scope keys an agent runtime must honour blocks on (used by the SDK kill switch)."""
    keys = ["global", f"org:{org}", f"team:{org}/{team}", f"agent:{agent}"]
    keys += [f"{kind}:{value}" for kind, value in (("run", run), ("user", user), ("model", model)) if value]
    return keys


def validate_scope(scope: str) -> str | None:
    """None if `scope` is a valid budget scope, else what is wrong with it."""
    if scope == "global":
        return None
    kind, sep, value = scope.partition(":")
    if not sep or kind not in KINDS or kind == "global":
        return f"scope {scope!r} must be 'global' or one of {', '.join(KINDS[1:])} followed by ':<value>'"
    if not value:
        return f"scope {scope!r} has no value (use '*' for each value separately)"
    if kind == "tag" and "=" not in value:
        return f"tag scope {scope!r} must look like tag:<key>=<value>"
    if kind == "team" and value != "*" and "/" not in value:
        return f"team scope {scope!r} must look like team:<org>/<team>"
    if "*" in value[:-1] or (value.endswith("*") and not value.endswith(("/*", "=*")) and value != "*"):
        return f"scope {scope!r}: '*' may only stand for a whole value"
    return None


def matches(budget_scope: str, key: str) -> bool:
    """Does the scope key `key` fall under the budget scope (exact, or a `*` pattern)?"""
    if budget_scope.endswith("*"):
        return key.startswith(budget_scope[:-1]) and len(key) > len(budget_scope) - 1
    return key == budget_scope


def pattern_of(key: str) -> list[str]:
    """The budget scopes that could match `key`: itself and its `*` forms (for index lookups)."""
    if key == "global":
        return ["global"]
    kind, _, value = key.partition(":")
    out = [key, f"{kind}:*"]
    if kind == "team":
        out.append(f"team:{value.split('/', 1)[0]}/*")
    elif kind == "tag":
        out.append(f"tag:{value.split('=', 1)[0]}=*")
    return out
