"""docker-compose.yml can't run here (no Docker engine): check that it parses and agrees with the
code: commands, topic prefix, ports, health checks and start-up order, no secrets, local binds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tokenfuse.cli.main import COMMANDS
from tokenfuse.config import Settings
from tokenfuse.kafka.topics import topic_specs

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DEFAULTS = Settings()
DEFAULT_KAFKA_PORT = int(DEFAULTS.bootstrap_servers.rsplit(":", 1)[1])
# Every command the stack runs, and the subcommands it needs from `tokenfuse`.
USED_COMMANDS = {"topics", "db", "worker", "sink", "notify", "autopilot"}


def tokenfuse_services() -> dict[str, dict]:
    return {name: s for name, s in SERVICES.items() if s.get("image") == "tokenfuse:local"}


def one_shot() -> set[str]:
    """Services others wait on to finish (service_completed_successfully)."""
    return {dep for s in SERVICES.values() for dep, cond in (s.get("depends_on") or {}).items()
            if cond["condition"] == "service_completed_successfully"}


def commands_run() -> set[str]:
    """`tokenfuse` subcommands named by the services: an entrypoint-form command's first word, or
    every `tokenfuse <word>` inside a shell command."""
    found = set()
    for service in tokenfuse_services().values():
        command = service.get("command") or []
        if service.get("entrypoint"):
            found.update(re.findall(r"\btokenfuse (\w+)", " ".join(command)))
        else:
            found.add(command[0])
    return found


def test_the_services_are_there_and_run_the_commands_the_cli_has():
    assert {"kafka", "clickhouse", "init", "worker", "sink", "grafana"} <= set(SERVICES)
    assert commands_run() == USED_COMMANDS
    missing = sorted(USED_COMMANDS - set(COMMANDS))
    assert not missing, f"docker-compose.yml runs tokenfuse {missing}, not in tokenfuse.cli.main.COMMANDS"


def test_init_creates_topics_then_migrates_once():
    init = SERVICES["init"]
    assert init["restart"] == "no"
    assert init["command"] == ["tokenfuse topics create && tokenfuse db migrate"]
    assert one_shot() == {"init"}


def test_every_long_running_service_has_a_healthcheck():
    for name, service in SERVICES.items():
        if name in one_shot():
            assert "healthcheck" not in service, name
        else:
            check = service.get("healthcheck")
            assert check and check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name


def test_startup_waits_for_health_and_for_init():
    for name, service in SERVICES.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dep in one_shot() else "service_healthy"
            assert cond == {"condition": expected}, f"{name} -> {dep}"
            assert "healthcheck" in SERVICES[dep] or dep in one_shot()
    for name in ("worker", "sink"):
        assert SERVICES[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}
        assert SERVICES[name]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert set(SERVICES["init"]["depends_on"]) == {"kafka", "clickhouse"}
    assert "clickhouse" in SERVICES["sink"]["depends_on"]


def test_settings_agree_with_the_code_defaults():
    fields = set(Settings.model_fields)
    for name, service in tokenfuse_services().items():
        env = service["environment"]
        for key in env:
            assert key.startswith("TOKENFUSE_") and key[len("TOKENFUSE_"):].lower() in fields, f"{name}: {key}"
        # Topic names: <prefix>.usage etc. must be those the runtimes use by default.
        assert env.get("TOKENFUSE_TOPIC_PREFIX", DEFAULTS.topic_prefix) == DEFAULTS.topic_prefix
        assert env.get("TOKENFUSE_PARTITIONS", DEFAULTS.partitions) == DEFAULTS.partitions
        assert env["TOKENFUSE_BOOTSTRAP_SERVERS"] == f"kafka:{DEFAULT_KAFKA_PORT}"
        assert env.get("TOKENFUSE_WEB_PORT", DEFAULTS.web_port) == DEFAULTS.web_port
        assert env.get("TOKENFUSE_WEB_HOST", DEFAULTS.web_host) in (DEFAULTS.web_host, "0.0.0.0")
        assert re.fullmatch(r"http://tokenfuse:\$\{TOKENFUSE_CLICKHOUSE_PASSWORD:\?[^}]+\}@clickhouse:8123/tokenfuse",
                            env["TOKENFUSE_CLICKHOUSE_URL"])
    specs = topic_specs(DEFAULTS)
    assert specs["usage"].name == "tokenfuse.usage" and specs["budgets"].name == "tokenfuse.budgets"


def test_kafka_listens_where_clients_look_and_keeps_transactions_working():
    kafka = SERVICES["kafka"]["environment"]
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["PLAINTEXT"] == f"kafka:{DEFAULT_KAFKA_PORT}"
    assert advertised["EXTERNAL"] == DEFAULTS.bootstrap_servers  # host tools: the default address
    external_port = next(item.rsplit(":", 1)[1] for item in kafka["KAFKA_LISTENERS"].split(",")
                         if item.startswith("EXTERNAL://"))
    assert SERVICES["kafka"]["ports"] == [f"127.0.0.1:{DEFAULT_KAFKA_PORT}:{external_port}"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert kafka["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert kafka["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 1
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics come from `topics create`
    pom_version = re.search(r"<kafka.version>([^<]+)<", (REPO / "deploy/kafka/pom.xml").read_text()).group(1)
    image, tag = SERVICES["kafka"]["image"].split(":")
    assert (image, tag) == ("apache/kafka", pom_version)


def test_every_published_port_binds_localhost_only():
    published = [(name, port) for name, s in SERVICES.items() for port in s.get("ports") or []]
    assert published
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_no_secret_is_committed():
    text = (REPO / "docker-compose.yml").read_text()
    for service in SERVICES.values():
        env = service.get("environment") or {}
        for key in ("TOKENFUSE_CONTROL_KEY", "TOKENFUSE_BUDGET_KEYS", "TOKENFUSE_CLICKHOUSE_PASSWORD", "CLICKHOUSE_PASSWORD",
                    "GF_SECURITY_ADMIN_PASSWORD"):
            if key in env:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", env[key]), key
    assert SERVICES["worker"]["environment"]["TOKENFUSE_CONTROL_KEY"] == \
        "${TOKENFUSE_CONTROL_KEY:?set TOKENFUSE_CONTROL_KEY}"
    assert "password" not in text.lower().replace("_password", "")


def test_the_dockerfile_installs_the_package_and_runs_as_a_user():
    lines = [line.strip() for line in (REPO / "deploy/Dockerfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(re.fullmatch(r"RUN pip install \.( .*)?", line) for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines[-2:] == ['ENTRYPOINT ["tokenfuse"]', 'CMD ["--help"]']
    # Every path the wheel force-includes is copied into the build.
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    pyproject = (REPO / "pyproject.toml").read_text()
    for source in re.findall(r'^"([^"]+)" = "tokenfuse/_data/', pyproject, re.M):
        assert source in copied, source
    checker = {s["healthcheck"]["test"][1] for n, s in tokenfuse_services().items() if n in ("worker", "sink")}
    assert checker == {"tokenfuse-healthcheck"} and any("/usr/local/bin/tokenfuse-healthcheck" in l for l in lines)


@pytest.mark.parametrize("column", ["event_time", "org", "team", "agent", "run", "user", "model", "provider",
                                    "input_tokens", "output_tokens", "cached_tokens", "cost_micro_usd"])
def test_the_grafana_dashboard_reads_usage_events_columns(column):
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/tokenfuse-spend.json").read_text())
    datasource = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/clickhouse.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    sql = " ".join(t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", [])  # rows have none
                   if t["datasource"]["uid"] == uid)
    sql += " " + dashboard["templating"]["list"][0]["query"]
    assert "FROM usage_events" in sql
    assert re.search(rf"\b{column}\b", sql), column
    ddl = " ".join(p.read_text() for p in sorted((REPO / "deploy/clickhouse").rglob("*.sql")))
    table = re.search(r"CREATE TABLE[^(]*?\busage_events\b[^(]*\((.*?)\)\s*ENGINE", ddl, re.S | re.I)
    assert table, "deploy/clickhouse/*.sql defines no usage_events table"
    assert re.search(rf"^\s*`?{column}`?\s", table.group(1), re.M), f"usage_events has no column {column}"
