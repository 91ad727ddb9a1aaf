"""The autopilot policy file: a valid one parses with its units and defaults; every problem of a
bad one is reported at once at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenfuse.autopilot.policy import Raise, Shrink, load_policy
from tokenfuse.errors import ConfigError

EXAMPLE = """\
autopilot:
  - budget: team-search-daily
    unit: usd
    floor: 50
    cap: 400.5
    max_step: 100
    cooldown: 1h
    parent: org-acme-daily
    raise: {margin: 15, expires: never}
    shrink: {idle_windows: 5, idle_below: 40}
    mode: approve
  - budget: "team-*-daily"
    floor: 1000
    cap: 90000
    max_step: 5000
    cooldown: 30m
    raise:
    mode: auto
"""


def test_the_documented_example_parses_with_usd_amounts_in_micro_usd_and_defaults_filled_in(tmp_path):
    path = tmp_path / "autopilot.yaml"
    path.write_text(EXAMPLE)
    first, second = load_policy(path).rules
    assert (first.floor, first.cap, first.max_step, first.cooldown_ms) == (50_000_000, 400_500_000, 100_000_000,
                                                                           3_600_000)
    assert first.raise_ == Raise(15, "never") and first.shrink == Shrink(5, 40) and first.mode == "approve"
    assert first.parent == "org-acme-daily" and first.line == 2
    assert second.raise_ == Raise() and second.shrink is None and second.unit is None
    policy = load_policy(path)
    assert policy.rule_for("team-search-daily") == first  # the first rule that matches wins
    assert policy.rule_for("team-ads-daily") == second and policy.rule_for("org-acme-daily") is None


def test_the_docs_page_example_is_a_valid_policy(tmp_path):
    text = (Path(__file__).parents[2] / "docs" / "autopilot.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "autopilot.yaml"
    path.write_text(block)
    assert load_policy(path).rules


@pytest.mark.parametrize("text, problems", [
    ("", ["p.yaml: the file is empty; expected an 'autopilot:' list"]),
    ("budgets: []\n", ["p.yaml:1: unknown field 'budgets' (known: autopilot)", "p.yaml:1: missing the 'autopilot:' list"]),
    ("autopilot:\n  - budget: a\n    floor: 1\n    cap: 2\n    max_step: 1\n    cooldown: 1h\n    mode: auto\n",
     ["p.yaml:2: autopilot[0]: needs a trigger: 'raise', 'shrink' or both"]),
    ("autopilot:\n  - {budget: 'a*', floor: 1, cap: 2, max_step: 1, cooldown: 1h, mode: auto, raise: true,\n"
     "     parent: ab}\n  - {budget: 'a*', floor: 1.5, cap: 2, max_step: 0, cooldown: 1h, mode: auto, shrink: {idle_windows: 0}}\n",
     ["p.yaml:3: autopilot[0].parent: 'ab' is matched by this rule's own budget pattern",
      "p.yaml:4: autopilot[1].budget: 'a*' has a rule already (first at line 2)",
      "p.yaml:4: autopilot[1].floor: must be a whole number in the budget's units (or set unit: usd), got 1.5",
      "p.yaml:4: autopilot[1].max_step: must be a positive number, got 0",
      "p.yaml:4: autopilot[1].shrink.idle_windows: must be an integer from 1 to 365, got 0"]),
    ("autopilot:\n  - {budget: a, unit: eur, floor: 1, cap: 2, max_step: 1, cooldown: 1h, mode: auto, raise: true}\n",
     ["p.yaml:2: autopilot[0].unit: 'eur' is not one of usd"]),
    ("autopilot:\n  - {budget: a, unit: usd, floor: 0.0000001, cap: 2, max_step: 1, cooldown: 1h, mode: auto, "
     "raise: true, colldown: 1h}\n",
     ["p.yaml:2: autopilot[0]: unknown field 'colldown' (did you mean 'cooldown'?)",
      "p.yaml:2: autopilot[0].floor: 1E-7 USD has more than 6 decimals (1 micro-USD)"]),
])
def test_every_problem_of_a_bad_policy_is_reported_at_its_line(tmp_path, text, problems):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_policy(path, "p.yaml")
    assert caught.value.problems == problems
