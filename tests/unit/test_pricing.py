"""The price catalog: exact integer pricing, model lookup, and file validation messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from tokenfuse.errors import ConfigError
from tokenfuse.usage.pricing import PriceCatalog, Priced
from tokenfuse.resources import resource_path


def catalog_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> PriceCatalog:
    return PriceCatalog.load(catalog_file(tmp_path, """\
        version: 7
        fallback: {input: 10, output: 20, cached_input: 1}
        providers:
          openai:
            gpt-4o: {input: 2.50, output: 10.00, cached_input: 1.25}
            gpt-4o-mini: {input: 0.15, output: 0.60, cached_input: 0.075}
            half: {input: 0.5, output: 0.29}
          azure:
            gpt-4o: {input: 2.75, output: 11.00}
          anthropic:
            claude-sonnet-4: {input: 3, output: 15, cached_input: 0.30}
        """))


def event(model: str, provider: str = "openai", inp: int = 0, out: int = 0, cached: int = 0,
          cost: int | None = None) -> dict:
    return {"model": model, "provider": provider, "input_tokens": inp, "output_tokens": out,
            "cached_tokens": cached, "cost_micro_usd": cost}


def test_cached_tokens_are_billed_at_the_cached_price_and_the_rest_at_input(catalog):
    # 800 uncached * 2.50 + 200 cached * 1.25 + 500 out * 10.00 (USD per 1M) = 7250 micro-USD
    assert catalog.cost(event("gpt-4o", inp=1000, cached=200, out=500)) == Priced(7250, "catalog", None, 7250)


def test_rounding_is_half_up_once_on_the_total(catalog):
    assert catalog.cost(event("half", inp=1)).micro_usd == 1  # 0.5 -> 1
    assert catalog.cost(event("half", inp=2)).micro_usd == 1
    assert catalog.cost(event("half", inp=3)).micro_usd == 2  # 1.5 -> 2
    # 1 input (0.5) + 1 output (0.29) = 0.79 -> 1, not round(0.5) + round(0.29) = 0 + 0
    assert catalog.cost(event("half", inp=1, out=1)).micro_usd == 1


def test_prices_are_read_exactly_without_float_drift(catalog):
    # 0.29 * 1e6 is 290000.00000000006 as a float; the catalog reads the text.
    assert catalog.lookup("half", "openai").output == 290_000
    assert catalog.lookup("gpt-4o-mini", "openai").cached_input == 75_000
    many = catalog.cost(event("half", out=1_000_000_000)).micro_usd
    assert many == 290_000_000  # 1e9 tokens * $0.29/1M = $290 exactly


def test_a_reported_cost_at_or_above_the_catalog_counts_as_reported(catalog):
    assert catalog.cost(event("gpt-4o", inp=1_000_000, cost=3_000_000)) == Priced(3_000_000, "event", 3_000_000,
                                                                               2_500_000)
    assert catalog.cost(event("gpt-4o", inp=1_000_000, cost=2_500_000)).source == "event"


def test_a_reported_cost_below_the_catalog_counts_the_catalog_and_is_flagged(catalog):
    """A runtime reporting 0 for 50M tokens (a bug, or an agent dodging its budget) still pays."""
    assert catalog.cost(event("gpt-4o", inp=50_000_000, cost=0)) == Priced(125_000_000, "underreported", 0,
                                                                          125_000_000)
    assert catalog.cost(event("gpt-4o", inp=1_000_000, cost=42)).micro_usd == 2_500_000
    # An unknown model's fallback price is a floor too: a made-up model name is no way around it.
    assert catalog.cost(event("no-such-model", inp=1_000_000, cost=0)) == Priced(10_000_000, "underreported", 0,
                                                                                10_000_000)


def test_an_unknown_model_is_priced_by_the_fallback_and_flagged(catalog):
    assert catalog.cost(event("mystery-llm", "acme", inp=1000, out=1000)) == Priced(30_000, "fallback", None, 30_000)
    assert catalog.lookup("mystery-llm") is None


def test_provider_specific_price_wins_and_a_bare_name_takes_the_first_provider(catalog):
    assert catalog.cost(event("gpt-4o", "azure", inp=1_000_000)).micro_usd == 2_750_000
    assert catalog.cost(event("gpt-4o", "unknown", inp=1_000_000)).micro_usd == 2_500_000
    assert catalog.cost(event("openai/gpt-4o", "litellm", inp=1_000_000)).micro_usd == 2_500_000


@pytest.mark.parametrize("model, expected", [
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest known prefix
    ("GPT-4o-Latest", "gpt-4o"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-sonnet-4@20250514", "claude-sonnet-4"),
    ("gpt-4o-0613", "gpt-4o"),
])
def test_dated_and_versioned_names_resolve_to_the_listed_model(catalog, model, expected):
    assert catalog.lookup(model, "whatever") == catalog.lookup(expected, "whatever") is not None


@pytest.mark.parametrize("model", ["gpt-4o-turbo", "gpt-4", "claude-sonnet-4-5", "gpt-4o2024"])
def test_other_names_sharing_a_prefix_are_not_guessed(catalog, model):
    assert catalog.lookup(model) is None
    assert catalog.cost(event(model, inp=1)).source == "fallback"


def test_every_problem_is_reported_with_its_line(tmp_path):
    path = catalog_file(tmp_path, """\
        version: ""
        fallback: {input: 1, output: x}
        providers:
          openai:
            gpt-4o: {input: -1, output: 2, cahced_input: 1}
            gpt-4o-mini: {input: 0.0000001, output: 1}
            o3: {input: 1}
        extra: 1
        """)
    with pytest.raises(ConfigError) as err:
        PriceCatalog.load(path)
    assert err.value.problems == [
        f"{path}:1: version: must be a number or a non-empty string, got ''",
        f"{path}:2: fallback.output: must be a non-negative number of USD per 1M tokens, got 'x'",
        f"{path}:5: providers.openai.gpt-4o: unknown field 'cahced_input' (did you mean 'cached_input'?)",
        f"{path}:5: providers.openai.gpt-4o.input: must be a non-negative number of USD per 1M tokens, got -1",
        f"{path}:6: providers.openai.gpt-4o-mini.input: 1E-7 has more than 6 decimals",
        f"{path}:7: providers.openai.o3: missing required field 'output'",
        f"{path}:8: unknown field 'extra' (known: version, fallback, providers)",
    ]


def test_a_yaml_syntax_error_names_its_line(tmp_path):
    path = catalog_file(tmp_path, "version: 1\nfallback: {input: 1, output: 2\nproviders: {}\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: YAML syntax error"):
        PriceCatalog.load(path)


def test_the_shipped_catalog_loads_and_knows_the_well_known_models():
    catalog = PriceCatalog.load()
    assert catalog.version
    for provider, model in [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"),
                            ("openai", "o3"), ("anthropic", "claude-sonnet-4-5-20250929"),
                            ("anthropic", "claude-opus-4-1"), ("anthropic", "claude-3-5-haiku-20241022"),
                            ("google", "gemini-2.5-pro"), ("google", "gemini-2.5-flash")]:
        assert catalog.lookup(model, provider) is not None, model
    # The fallback over-counts rather than under-counts: no listed model costs more.
    listed = yaml.safe_load(resource_path("prices.yaml").read_text())["providers"]
    prices = [catalog.lookup(model, provider) for provider, models in listed.items() for model in models]
    assert catalog.fallback.input >= max(p.input for p in prices)
    assert catalog.fallback.output >= max(p.output for p in prices)
