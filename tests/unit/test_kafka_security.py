"""Kafka security settings: validation (all problems at once, nothing half-configured), the
translations for confluent-kafka and Faust/aiokafka, the key-length rule, and the ACL matrix."""

from __future__ import annotations

import re
from pathlib import Path

import certifi
import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from tokenfuse.config import Settings
from tokenfuse.errors import ConfigError
from tokenfuse.kafka.acls import ROLES, principals, role_grants, table
from tokenfuse.kafka.security import faust_app_options, faust_credentials, librdkafka_security

REPO = Path(__file__).resolve().parents[2]
CA = certifi.where()  # any readable PEM CA bundle
SCRAM = dict(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="tokenfuse-worker",
             sasl_password="s3cret-password", ssl_ca_file=CA)


def problems(**fields) -> list[str]:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(**fields)
    return err.value.problems


def test_plaintext_is_the_default_and_adds_nothing_to_the_client_configs():
    settings = Settings()
    assert librdkafka_security(settings) == {} and faust_app_options(settings) == {}


def test_sasl_ssl_with_scram_reaches_confluent_kafka_with_every_setting():
    assert librdkafka_security(Settings(**SCRAM)) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "tokenfuse-worker",
        "sasl.password": "s3cret-password", "ssl.ca.location": CA}


def test_sasl_ssl_with_scram_reaches_aiokafka_through_faust_with_a_verifying_tls_context():
    credentials = faust_app_options(Settings(**SCRAM))["broker_credentials"]
    auth = credentials_to_aiokafka_auth(credentials)  # what Faust passes to every aiokafka client
    assert {k: auth[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                 "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tokenfuse-worker", "sasl_plain_password": "s3cret-password"}
    assert auth["ssl_context"].check_hostname and auth["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_sasl_plaintext_and_ssl_only_map_to_the_matching_faust_credentials():
    plain = faust_credentials(Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                       sasl_username="u", sasl_password="p"))
    assert isinstance(plain, SASLCredentials) and credentials_to_aiokafka_auth(plain)["security_protocol"] == \
        "SASL_PLAINTEXT"
    tls = faust_credentials(Settings(security_protocol="SSL", ssl_ca_file=CA))
    assert isinstance(tls, SSLCredentials) and credentials_to_aiokafka_auth(tls)["security_protocol"] == "SSL"


def test_client_certificate_and_key_reach_confluent_kafka(tmp_path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert"), key.write_text("key")
    config = librdkafka_security(Settings(security_protocol="SSL", ssl_cert_file=cert, ssl_key_file=key,
                                          ssl_key_password="kp"))
    assert config == {"security.protocol": "SSL", "ssl.certificate.location": str(cert),
                      "ssl.key.location": str(key), "ssl.key.password": "kp"}


def test_a_sasl_protocol_without_credentials_lists_every_missing_setting():
    assert problems(security_protocol="SASL_SSL") == [
        f"TOKENFUSE_{name}: required with TOKENFUSE_SECURITY_PROTOCOL=SASL_SSL"
        for name in ("SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD")]


def test_settings_the_protocol_would_ignore_are_errors_not_a_silent_plaintext_connection():
    found = problems(sasl_username="u", sasl_password="p", ssl_ca_file=CA)
    assert [p.split(":")[0] for p in found] == ["TOKENFUSE_SASL_USERNAME", "TOKENFUSE_SASL_PASSWORD",
                                                "TOKENFUSE_SSL_CA_FILE"]
    assert "TOKENFUSE_SECURITY_PROTOCOL=PLAINTEXT does not use it" in found[0]


def test_missing_files_and_a_certificate_without_its_key_are_reported(tmp_path):
    cert = tmp_path / "client.pem"
    cert.write_text("cert")
    found = problems(security_protocol="SSL", ssl_ca_file=tmp_path / "nope.pem", ssl_cert_file=cert)
    assert found == [f"TOKENFUSE_SSL_CA_FILE: {tmp_path / 'nope.pem'} is not a readable file",
                     "TOKENFUSE_SSL_KEY_FILE: TOKENFUSE_SSL_CERT_FILE and TOKENFUSE_SSL_KEY_FILE go together"]


def test_unknown_protocol_or_mechanism_is_refused():
    assert problems(security_protocol="TLS")[0].startswith("TOKENFUSE_SECURITY_PROTOCOL: Input should be")
    assert problems(**{**SCRAM, "sasl_mechanism": "GSSAPI"})[0].startswith("TOKENFUSE_SASL_MECHANISM:")


@pytest.mark.parametrize("key", ["", "short", "x" * 31])
def test_an_empty_or_short_control_key_is_a_start_up_error_in_every_role(key):
    assert problems(control_key=key) == [
        "TOKENFUSE_CONTROL_KEY: must be at least 32 bytes (generate one with `openssl rand -hex 32`)"]


def test_a_32_byte_control_key_is_accepted():
    assert Settings(control_key="k" * 32).control_key.get_secret_value() == "k" * 32


def test_secrets_never_show_in_the_settings_repr():
    shown = repr(Settings(**SCRAM, control_key="c" * 40))
    assert "s3cret-password" not in shown and "c" * 40 not in shown


def test_only_the_worker_writes_alerts_deltas_dlq_and_only_worker_and_operators_write_control():
    grants = role_grants(Settings())
    writers = {topic: sorted({g.role for g in grants if g.operation == "WRITE" and g.name == f"tokenfuse.{topic}"})
               for topic in ("usage", "budgets", "control", "alerts", "deltas", "dlq", "autopilot")}
    assert writers == {"usage": ["runtime"], "budgets": ["autopilot", "operator"], "control": ["operator", "worker"],
                       "alerts": ["worker"], "deltas": ["worker"], "dlq": ["worker"],
                       "autopilot": ["autopilot", "operator"]}


def test_sink_and_dashboard_write_nothing_and_nobody_gets_cluster_wide_rights():
    grants = role_grants(Settings())
    assert {g.operation for g in grants if g.role in ("sink", "dashboard")} == {"READ", "DESCRIBE"}
    assert all(g.operation in ("READ", "WRITE", "DESCRIBE", "CREATE") for g in grants)
    assert {g.name for g in grants if g.operation == "CREATE"} == {"tokenfuse-worker-"}  # Faust's changelogs


def test_principals_default_to_the_local_brokers_users_and_can_be_overridden():
    assert principals(["worker=User:CN=worker.prod"])["worker"] == "User:CN=worker.prod"
    assert principals()["sink"] == "User:tokenfuse-sink"
    with pytest.raises(ConfigError, match="ROLE=User:NAME"):
        principals(["auditor=User:x"])
    assert "User:tokenfuse-runtime    WRITE" in table(role_grants(Settings()), principals())


def test_the_local_broker_script_creates_a_user_for_every_role():
    script = (REPO / "deploy" / "kafka" / "kafka.sh").read_text()
    assert tuple(re.search(r"^roles=\(([^)]*)\)", script, re.M).group(1).split()) == ROLES


def test_empty_security_variables_count_as_unset_so_compose_can_pass_them_through():
    settings = Settings.from_env(sasl_mechanism="", sasl_username="", sasl_password="", ssl_ca_file="")
    assert settings.sasl_username is None and settings.ssl_ca_file is None
