"""Files shipped beside the code: schemas, ClickHouse migrations, the price catalog.

In a source checkout they live at the repository root (schemas/, deploy/); in a wheel they are
copied to tokenfuse/_data/ (see pyproject.toml). One lookup serves both.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parents[1]

_LOCATIONS = {
    "schemas": (_REPO / "schemas", _PACKAGE / "_data" / "schemas"),
    "clickhouse": (_REPO / "deploy" / "clickhouse", _PACKAGE / "_data" / "clickhouse"),
    "prices.yaml": (_REPO / "deploy" / "prices.yaml", _PACKAGE / "_data" / "prices.yaml"),
    "kafka": (_REPO / "deploy" / "kafka", _PACKAGE / "_data" / "kafka"),
}


def resource_path(name: str) -> Path:
    """The path of a shipped resource (`schemas`, `clickhouse`, `prices.yaml`, `kafka`)."""
    for candidate in _LOCATIONS[name]:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"tokenfuse resource {name!r} is missing from this installation")
