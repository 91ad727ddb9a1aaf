"""The price catalog: turns an event's tokens into integer micro-USD, and checks the runtime's own cost.

Prices live in `deploy/prices.yaml` (USD per 1M tokens per provider/model, plus a fallback for
models it does not know: an unknown model is priced, flagged `fallback`, never free). Prices are
held as integers, micro-USD per 1M tokens, so a cost is `tokens * price / 1e6` in integer
arithmetic with one round-half-up at the end: no float drift however many events are summed.

Model lookup, in order: `provider/model`, bare `model`, then the longest known prefix of the model
followed by a date or version suffix (`gpt-4o-2024-08-06` -> `gpt-4o`,
`claude-sonnet-4@20250514` -> `claude-sonnet-4`). A bare model name listed under two providers
resolves to the first one in the file. Names are compared case-insensitively.

A cost the runtime reports is not trusted blindly (a runtime could report 0 for 50M tokens): the
count is the larger of the reported and the catalog cost, and an event whose report is below the
catalog is flagged `underreported`. Both costs are kept in history. Negotiated prices below the
list price belong in the catalog, not in reports that budgets would then ignore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenfuse.resources import resource_path
from tokenfuse.config.yamlnodes import Problems, compose_file, decimal_value, describe, mapping, unknown_keys, value

MICRO = 1_000_000
_HALF = MICRO // 2
_PRICE_FIELDS = ("input", "output", "cached_input")
_TOP_FIELDS = ("version", "fallback", "providers")
# What may follow a known model name and still be that model: a release date or version tag.
_VERSION_SUFFIX = re.compile(r"[-@](\d{4}-\d{2}-\d{2}|\d{3,8}|latest)(-v\d+(:\d+)?)?")
_CACHE_MAX = 10_000  # distinct (provider, model) pairs remembered; bounds memory against junk names


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Micro-USD per 1M tokens (= USD per 1M tokens * 1e6)."""

    input: int
    output: int
    cached_input: int


@dataclass(frozen=True, slots=True)
class Priced:
    """What an event costs toward budgets (`micro_usd`) and where that figure came from."""

    micro_usd: int
    # "event": the runtime's own cost (at least the catalog's); "catalog" (model known) or
    # "fallback" (unknown model): no cost reported; "underreported": reported below the catalog,
    # which is counted instead.
    source: str
    reported: int | None = None  # the runtime's own cost, if it sent one
    catalog: int | None = None  # the catalog's (or fallback's) cost of the same tokens


class PriceCatalog:
    def __init__(self, version: str, fallback: ModelPrice, prices: dict[str, ModelPrice]):
        """`prices` maps lower-case `provider/model` and bare `model` names to prices."""
        self.version = version
        self.fallback = fallback
        self._prices = prices
        self._resolved: dict[tuple[str, str], tuple[ModelPrice, str]] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> "PriceCatalog":
        """Read a catalog file (default: the shipped prices.yaml). ConfigError lists every problem."""
        path = path or resource_path("prices.yaml")
        problems = Problems(str(path))
        root = mapping(compose_file(path), "", problems)
        version, fallback, prices = None, None, {}
        if root is not None:
            unknown_keys(root, _TOP_FIELDS, "", problems)
            for name in _TOP_FIELDS:
                if name not in root:
                    problems.add(None, "", f"missing required field {name!r}")
            if "version" in root:
                version = _version(root["version"][1], problems)
            if "fallback" in root:
                fallback = _price(root["fallback"][1], "fallback", problems)
            if "providers" in root:
                prices = _providers(root["providers"][1], problems)
        problems.raise_if_any("price catalog")
        return cls(version, fallback, prices)

    def lookup(self, model: str, provider: str = "unknown") -> ModelPrice | None:
        """The catalog's price for a model, or None when only the fallback applies."""
        price, source = self._resolve(provider, model)
        return price if source == "catalog" else None

    def cost(self, event: dict[str, Any]) -> Priced:
        """The cost of a (validated) UsageEvent: the larger of the reported and the catalog cost.
        Cached tokens are a subset of input tokens."""
        price, source = self._resolve(event.get("provider") or "unknown", event["model"])
        inputs = event["input_tokens"]
        cached = min(event.get("cached_tokens") or 0, inputs)
        scaled = ((inputs - cached) * price.input + cached * price.cached_input
                  + event["output_tokens"] * price.output)
        listed = (scaled + _HALF) // MICRO
        reported = event.get("cost_micro_usd")
        if reported is None:
            return Priced(listed, source, None, listed)
        if reported < listed:
            return Priced(listed, "underreported", reported, listed)
        return Priced(reported, "event", reported, listed)

    def _resolve(self, provider: str, model: str) -> tuple[ModelPrice, str]:
        key = (provider, model)
        hit = self._resolved.get(key)
        if hit is None:
            price = self._match(provider.lower(), model.lower())
            hit = (price, "catalog") if price is not None else (self.fallback, "fallback")
            if len(self._resolved) >= _CACHE_MAX:
                self._resolved.clear()
            self._resolved[key] = hit
        return hit

    def _match(self, provider: str, model: str) -> ModelPrice | None:
        exact = self._prices.get(f"{provider}/{model}") or self._prices.get(model)
        if exact is not None:
            return exact
        # Longest prefix first: walk the separators from the right.
        for cut in sorted((i for i, ch in enumerate(model) if ch in "-@"), reverse=True):
            if _VERSION_SUFFIX.fullmatch(model[cut:]):
                base = model[:cut]
                found = self._prices.get(f"{provider}/{base}") or self._prices.get(base)
                if found is not None:
                    return found
        return None


def _version(node, problems: Problems) -> str | None:
    raw = value(node)
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or raw == "":
        problems.add(node, "version", f"must be a number or a non-empty string, got {describe(node)}")
        return None
    return str(raw)


def _providers(node, problems: Problems) -> dict[str, ModelPrice]:
    prices: dict[str, ModelPrice] = {}
    providers = mapping(node, "providers", problems) or {}
    for provider, (_, models_node) in providers.items():
        models = mapping(models_node, f"providers.{provider}", problems) or {}
        for model, (_, price_node) in models.items():
            price = _price(price_node, f"providers.{provider}.{model}", problems)
            if price is not None:
                prices[f"{provider}/{model}".lower()] = price
                prices.setdefault(model.lower(), price)  # first provider listed wins a bare name
    return prices


def _price(node, path: str, problems: Problems) -> ModelPrice | None:
    """USD per 1M tokens -> micro-USD per 1M tokens; cached_input defaults to input."""
    fields = mapping(node, path, problems)
    if fields is None:
        return None
    unknown_keys(fields, _PRICE_FIELDS, path, problems)
    micro: dict[str, int] = {}
    for name in _PRICE_FIELDS:
        if name not in fields:
            if name != "cached_input":
                problems.add(node, path, f"missing required field {name!r}")
            continue
        value_node = fields[name][1]
        number = decimal_value(value_node)
        if number is None or number < 0:
            problems.add(value_node, f"{path}.{name}",
                         f"must be a non-negative number of USD per 1M tokens, got {describe(value_node)}")
        elif (number * MICRO) % 1:
            problems.add(value_node, f"{path}.{name}", f"{number} has more than 6 decimals")
        else:
            micro[name] = int(number * MICRO)
    if "input" not in micro or "output" not in micro or ("cached_input" in fields and "cached_input" not in micro):
        return None
    return ModelPrice(micro["input"], micro["output"], micro.get("cached_input", micro["input"]))
