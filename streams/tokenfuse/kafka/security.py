"""Kafka security settings (Settings.security_protocol, sasl_*, ssl_*) in the words of each client
library we use: confluent-kafka/librdkafka (SDK, sink, CLI, followers, the worker's recovery
probe) and Faust/aiokafka (the worker). One place, so every client connects the same way.

Settings are validated already (config/settings.py): a SASL protocol has mechanism, user and
password; files exist. Secrets leave SecretStr only here, into the client's own config.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenfuse.config import Settings


def librdkafka_security(settings: "Settings") -> dict[str, str]:
    """confluent-kafka properties; empty for PLAINTEXT (librdkafka's defaults)."""
    s = settings
    if s.security_protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": s.security_protocol}
    if s.sasl_mechanism is not None:
        config.update({"sasl.mechanism": s.sasl_mechanism, "sasl.username": s.sasl_username or "",
                       "sasl.password": s.sasl_password.get_secret_value() if s.sasl_password else ""})
    files = {"ssl.ca.location": s.ssl_ca_file, "ssl.certificate.location": s.ssl_cert_file,
             "ssl.key.location": s.ssl_key_file}
    config.update({name: str(path) for name, path in files.items() if path is not None})
    if s.ssl_key_password is not None:
        config["ssl.key.password"] = s.ssl_key_password.get_secret_value()
    return config


def ssl_context(settings: "Settings") -> ssl.SSLContext:
    """The TLS context aiokafka uses: verifies the brokers' certificates and host names against
    ssl_ca_file (or the system's CAs), presents the client certificate when one is set."""
    from aiokafka.helpers import create_ssl_context

    s = settings
    return create_ssl_context(
        cafile=str(s.ssl_ca_file) if s.ssl_ca_file else None,
        certfile=str(s.ssl_cert_file) if s.ssl_cert_file else None,
        keyfile=str(s.ssl_key_file) if s.ssl_key_file else None,
        password=s.ssl_key_password.get_secret_value() if s.ssl_key_password else None,
    )


def faust_credentials(settings: "Settings") -> Any:
    """`faust.App(broker_credentials=...)`: Faust hands it to every aiokafka client it makes
    (consumer, producers, transactional producers, topic creation). None for PLAINTEXT."""
    from faust.auth import SASLCredentials, SSLCredentials

    s = settings
    tls = ssl_context(s) if s.security_protocol in ("SSL", "SASL_SSL") else None
    if s.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        # Faust picks SASL_SSL when a context is given, SASL_PLAINTEXT when not; aiokafka does
        # PLAIN and both SCRAM mechanisms with the same username/password arguments.
        return SASLCredentials(username=s.sasl_username, ssl_context=tls, mechanism=s.sasl_mechanism,
                               password=s.sasl_password.get_secret_value() if s.sasl_password else None)
    return SSLCredentials(tls) if tls is not None else None


def faust_app_options(settings: "Settings") -> dict[str, Any]:
    """Keyword arguments for `faust.App(...)` that carry the security settings."""
    credentials = faust_credentials(settings)
    return {"broker_credentials": credentials} if credentials is not None else {}
