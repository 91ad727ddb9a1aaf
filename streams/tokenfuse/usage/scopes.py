"""Scope keys: which totals a usage event counts toward, and which scopes a budget targets.

Keys: `global`, `org:<org>`, `team:<org>/<team>`, `agent:<agent>`, `run:<run>`, `user:<user>`,
`model:<model>`, `tag:<key>=<value>`. A budget's scope may end in `*` ("each value separately"):
`agent:*`, `team:acme/*`, `tag:env=*`.

A key must name one scope only, so each field may not hold the characters that would make two
different events share a key (`FIELDS`, documented in docs/sdk.md): `/` in org or team
(`org='a/b', team='c'` and `org='a', team='b/c'` would both be `team:a/b/c`), `=` in a tag key
(`{'a=b': 'c'}` and `{'a': 'b=c'}`), `*` anywhere (a literal `agent:*` would pose as the
wildcard), control and invisible format characters anywhere (keys that print alike). `:` aliases
nothing (the kind before the first `:` is a fixed word), so model names like `llama3:8b` pass, as
do `/` in model names (`openai/gpt-4o`: model keys are not nested). Lengths and the number of tags
are capped, so one event cannot make thousands of scopes or megabyte messages.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

KINDS = ("global", "org", "team", "agent", "run", "user", "model", "tag")
# Kinds whose value changes from call to call within one runtime (the others are fixed when a
# runtime starts): a runtime's kill switch must keep every state of these kinds, not only its own.
PER_CALL_KINDS = ("run", "user", "model", "tag")

MAX_ID_CHARS = 256
MAX_TAGS = 16
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 256
_ALWAYS = "*"  # plus control characters (C0, DEL, C1) and Unicode format characters (category Cf)


@dataclass(frozen=True)
class FieldRule:
    """What one usage field may hold: at most `max_chars` characters, none of `forbidden`."""

    name: str
    max_chars: int
    forbidden: str = ""
    why: str = ""
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        chars = re.escape(_ALWAYS + self.forbidden)
        object.__setattr__(self, "pattern", re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{chars}]"))

    def problem(self, value: object) -> str | None:
        """None if `value` is acceptable, else a one-line reason naming the field and the value."""
        if not isinstance(value, str):
            return f"{self.name} must be a string, got {type(value).__name__}"
        if not value:
            return f"{self.name} must not be empty"
        if len(value) > self.max_chars:
            return f"{self.name} {shown(value)} is {len(value)} characters, more than {self.max_chars}"
        bad = self.pattern.search(value)
        char = bad.group() if bad else None
        if char is None and not value.isascii():
            char = next((c for c in value if unicodedata.category(c) == "Cf"), None)
        if char is None:
            return None
        why = (self.why if char in self.forbidden else "'*' means every value in budget scopes" if char == "*"
               else "control and invisible format characters make keys that print alike")
        return f"{self.name} {shown(value)} may not contain {char!r} ({why})"


FIELDS = {rule.name: rule for rule in (
    FieldRule("event_id", MAX_ID_CHARS),
    FieldRule("org", MAX_ID_CHARS, "/", "team keys are team:<org>/<team>"),
    FieldRule("team", MAX_ID_CHARS, "/", "team keys are team:<org>/<team>"),
    FieldRule("agent", MAX_ID_CHARS, "/", "the agent id names the SDK's spool folder"),
    FieldRule("run", MAX_ID_CHARS),
    FieldRule("user", MAX_ID_CHARS),
    FieldRule("model", MAX_ID_CHARS),
    FieldRule("provider", MAX_ID_CHARS, "/", "prices are looked up as <provider>/<model>"),
    FieldRule("tag key", MAX_TAG_KEY_CHARS, "=", "tag keys are tag:<key>=<value>"),
    FieldRule("tag value", MAX_TAG_VALUE_CHARS),
)}


def shown(value: str) -> str:
    """A value for an error message: quoted, cut short (values may be 100 kB on purpose)."""
    return repr(value) if len(value) <= 60 else f"{value[:60]!r}..."


def field_problem(field: str, value: object) -> str | None:
    """What is wrong with one field's value (see FIELDS), or None. Agent `.` and `..` are paths."""
    problem = FIELDS[field].problem(value)
    if problem is None and field == "agent" and value in (".", ".."):
        return f"agent {value!r} is not an agent id (it names the SDK's spool folder)"
    return problem


def tags_problem(tags: object) -> str | None:
    """What is wrong with a tags map (count, keys, values), or None."""
    if not isinstance(tags, Mapping):
        return f"tags must be a mapping of strings, got {type(tags).__name__}"
    if len(tags) > MAX_TAGS:
        return f"{len(tags)} tags, more than {MAX_TAGS}"
    for key, value in tags.items():
        problem = FIELDS["tag key"].problem(key) or FIELDS["tag value"].problem(value)
        if problem:
            return f"tag {shown(str(key))}: {problem}"
    return None


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
    for field, part in _parts(kind, value):
        problem = None if part == "*" else field_problem(field, part)
        if problem:
            return f"scope {shown(scope)}: {problem}"
    return None


def _parts(kind: str, value: str) -> list[tuple[str, str]]:
    """The field values a scope key is made of: `team:acme/search` -> org acme, team search."""
    if value == "*":
        return []
    if kind == "team":
        org, _, team = value.partition("/")
        return [("org", org), ("team", team)]
    if kind == "tag":
        key, _, tag_value = value.partition("=")
        return [("tag key", key), ("tag value", tag_value)]
    return [(kind, value)]


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
