"""The Grafana dashboard (deploy/grafana) can't be loaded into Grafana here: check that it is valid
JSON whose panels use the provisioned datasource, and run every panel's SQL (Grafana macros
expanded, every scope choice) on the migrated schema in embedded ClickHouse, so a renamed table
or column fails here."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import yaml

from tests.history_helpers import chdb_settings, history  # noqa: F401 - fixtures
from tokenfuse.history.client import QueryError

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((REPO / "deploy/grafana/dashboards/tokenfuse-spend.json").read_text())
DATASOURCES = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/clickhouse.yaml").read_text())
MACROS = [
    (re.compile(r"\$__timeFilter\((\w+)\)"), r"\1 >= now() - INTERVAL 6 HOUR AND \1 <= now()"),
    (re.compile(r"\$__timeInterval\((\w+)\)"), r"toStartOfInterval(\1, INTERVAL 60 second)"),
]


def queries() -> list[tuple[str, str]]:
    """(panel title, SQL) for every target, once per value of each template variable it uses."""
    variables = {v["name"]: [o["value"] for o in v["options"]] for v in DASHBOARD["templating"]["list"]}
    out = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            sql = target["rawSql"]
            for pattern, replacement in MACROS:
                sql = pattern.sub(replacement, sql)
            used = [name for name in variables if f"${{{name}:raw}}" in sql]
            for values in itertools.product(*(variables[name] for name in used)):
                expanded = sql
                for name, chosen in zip(used, values):
                    expanded = expanded.replace(f"${{{name}:raw}}", chosen)
                out.append((panel["title"], expanded))
    return out


def test_the_dashboard_has_panels_for_blocks_alerts_forecasts_and_pipeline_health():
    titles = [p["title"] for p in DASHBOARD["panels"]]
    rows = [p["title"] for p in DASHBOARD["panels"] if p["type"] == "row"]
    assert rows == ["Blocks", "Alerts", "Forecasts", "Pipeline health"]
    assert "Scopes blocked now" in titles and "Forecast alerts (breach ETA)" in titles
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"


def test_every_panel_reads_the_provisioned_clickhouse_datasource():
    [source] = DATASOURCES["datasources"]
    for panel in DASHBOARD["panels"]:
        if panel["type"] == "row":
            continue
        for ref in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
            assert ref == {"type": source["type"], "uid": source["uid"]}, panel["title"]


def test_panels_do_not_overlap():
    taken = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert g["x"] + g["w"] <= 24 and not cells & taken, panel["title"]
        taken |= cells


def test_no_macro_or_variable_is_left_unexpanded():
    for title, sql in queries():
        assert "$" not in sql, f"{title}: {sql}"


def test_every_panel_query_runs_on_the_migrated_schema(history):
    failed = []
    for title, sql in queries():
        try:
            history.select(sql)
        except QueryError as exc:
            failed.append(f"{title}: {str(exc)[:300]}")
    assert not failed, "\n".join(failed)


def test_scopes_blocked_now_lists_the_scopes_whose_latest_signed_state_is_an_unexpired_block(history):
    [sql] = [s for title, s in queries() if title == "Scopes blocked now"]
    rows = [  # scope, state, until offset (s), signed, kafka_offset
        ("agent:released", "block", 3600, True, 1), ("agent:released", "allow", None, True, 2),
        ("agent:blocked", "block", 3600, True, 3), ("agent:expired", "block", -60, True, 4),
        ("agent:forged", "block", 3600, False, 5), ("agent:manual", "block", None, True, 6),
    ]
    for n, (scope, state, until, signed, offset) in enumerate(rows):
        history.command(
            "INSERT INTO control_changes (scope, state, reason, issued_at, until, key_id, signed, kafka_partition, "
            "kafka_offset) VALUES ({scope:String}, {state:String}, 'r', now64(3) - INTERVAL {age:UInt32} SECOND, "
            "if({has_until:Bool}, now64(3) + INTERVAL {until:Int32} SECOND, NULL), 'default', {signed:Bool}, 0, "
            "{offset:UInt64})",
            {"scope": scope, "state": state, "age": 100 - n, "has_until": until is not None, "until": until or 0,
             "signed": signed, "offset": offset})
    assert sorted(r[0] for r in history.select(sql).rows) == ["agent:blocked", "agent:manual"]
