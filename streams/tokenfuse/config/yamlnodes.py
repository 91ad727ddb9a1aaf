"""Reading user-written YAML with line numbers, so a bad file gets every problem reported at once.

PyYAML's `yaml.compose` keeps each node's position (`start_mark`); we walk the node tree instead of
the plain Python objects so that every message can say `file:line: field.path: what is wrong`.
"""

from __future__ import annotations

import difflib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator

import yaml

from tokenfuse.errors import ConfigError


class Problems:
    """Collects `file:line: path: message` lines; `raise_if_any` turns them into one ConfigError."""

    def __init__(self, source: str):
        self.source = source
        self._found: list[tuple[int, str]] = []

    def add(self, node: yaml.Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        where = f":{line}" if line else ""
        self._found.append((line, f"{self.source}{where}: {path + ': ' if path else ''}{message}"))

    def __len__(self) -> int:
        return len(self._found)

    def raise_if_any(self, what: str) -> None:
        """One ConfigError with every problem, in file order (problems without a line first)."""
        if self._found:
            count = len(self._found)
            problems = [text for _, text in sorted(self._found, key=lambda found: found[0])]
            raise ConfigError(f"{self.source}: invalid {what} ({count} problem{'s' * (count > 1)}):", problems)


def compose_file(path: Path, source: str | None = None) -> yaml.Node | None:
    """The root node of a YAML file. A missing file or a syntax error is a ConfigError with its line."""
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    return compose_text(text, source)


def compose_text(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f" ({exc.context} started at line {exc.context_mark.line + 1})"
        raise ConfigError(f"{source}{line}: YAML syntax error: {exc.problem or exc.context}{context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None


def value(node: yaml.Node) -> Any:
    """The Python value of a node (scalars typed the way yaml.safe_load types them)."""
    return yaml.SafeLoader("").construct_document(node)


def mapping(node: yaml.Node | None, path: str, problems: Problems) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    """key -> (key node, value node) of a mapping node; reports non-mappings and duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, path, f"must be a mapping, got {describe(node)}")
        return None
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = str(value(key_node))
        if key in out:
            problems.add(key_node, path, f"duplicate key {key!r} (first at line {out[key][0].start_mark.line + 1})")
        else:
            out[key] = (key_node, value_node)
    return out


def sequence(node: yaml.Node | None, path: str, problems: Problems) -> Iterator[tuple[int, yaml.Node]]:
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, path, f"must be a list, got {describe(node)}")
        return iter(())
    return enumerate(node.value)


def top_list(root: yaml.Node | None, key: str, problems: Problems) -> Iterator[tuple[int, yaml.Node]]:
    """The items of a file that is one `key:` list (budgets, autopilot policy), with the file's own
    problems (empty, another top-level key, no list) reported."""
    article = "an" if key[0] in "aeiou" else "a"
    if root is None:
        problems.add(None, "", f"the file is empty; expected {article} '{key}:' list")
        return iter(())
    top = mapping(root, "", problems)
    if top is None:
        return iter(())
    unknown_keys(top, (key,), "", problems)
    if key not in top:
        problems.add(root, "", f"missing the '{key}:' list")
        return iter(())
    return sequence(top[key][1], key, problems)


def unknown_keys(fields: dict[str, tuple[yaml.Node, yaml.Node]], allowed: tuple[str, ...], path: str,
                 problems: Problems) -> None:
    for key, (key_node, _) in fields.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
            problems.add(key_node, path, f"unknown field {key!r}{hint}")


def record_fields(node: yaml.Node, path: str, problems: Problems, allowed: tuple[str, ...],
                  required: tuple[str, ...]) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    """One record of a file (a budget, a policy rule): its fields, with unknown and missing ones
    reported; None if it is not a mapping at all."""
    fields = mapping(node, path, problems)
    if fields is None:
        return None
    unknown_keys(fields, allowed, path, problems)
    for name in required:
        if name not in fields:
            problems.add(node, path, f"missing required field {name!r}")
    return fields


def decimal_value(node: yaml.Node) -> Decimal | None:
    """A number written in the file, read exactly from its text (no float rounding), or None."""
    raw = value(node) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    try:
        number = Decimal(node.value.replace("_", ""))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def describe(node: yaml.Node | None) -> str:
    if node is None:
        return "nothing"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(value(node))
