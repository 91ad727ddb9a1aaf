"""The notifications file: channels, routing rules and the delivery policy.

Every problem is reported at once as `file:line: notifications.path: message`. Secrets (webhook
signing keys, Slack URLs, SMTP passwords) are never written in the file: it names environment
variables (`*_env`), read once here. The file (see deploy/notifications.example.yaml):

    notifications:
      dashboard_url: http://127.0.0.1:6070     # links in messages; optional
      channels:
        ops:   {type: webhook, url: https://hooks.example.com/tokenfuse, secret_env: OPS_HOOK_SECRET}
        team:  {type: slack, url_env: TEAM_SLACK_WEBHOOK}
        mail:  {type: email, smtp_host: 127.0.0.1, from: fuse@example.com, to: [oncall@example.com]}
      routes:
        - {channels: [ops, team], scopes: ["team:acme/*"], kinds: [threshold], min_severity: warning}
        - {channels: [mail], events: [blocked, released], digest: 10m, renotify: 1h}
      delivery: {retries: 6, backoff: 1s, max_backoff: 5m, disable_after: 5, stale_after: 1d}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from tokenfuse.config.yamlnodes import Problems, compose_file, describe, mapping, sequence, unknown_keys, value
from tokenfuse.notify.transitions import EVENTS, SEVERITIES, Transition
from tokenfuse.usage.windows import parse_duration_ms

_MILLIS = re.compile(r"^[1-9][0-9]*ms$")  # backoffs and timeouts below a second
CHANNEL_TYPES = ("webhook", "slack", "email")
_COMMON = ("type", "timeout", "rate_per_minute", "burst")
_CHANNEL_FIELDS = {
    "webhook": _COMMON + ("url", "url_env", "secret_env"),
    "slack": _COMMON + ("url", "url_env"),
    "email": _COMMON + ("smtp_host", "smtp_port", "starttls", "from", "to", "username_env", "password_env"),
}
_ROUTE_FIELDS = ("channels", "scopes", "kinds", "events", "min_severity", "digest", "renotify")
_DELIVERY_FIELDS = ("retries", "backoff", "max_backoff", "disable_after", "stale_after")


@dataclass(frozen=True)
class EmailSettings:
    smtp_host: str
    smtp_port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str
    url: str | None = field(default=None, repr=False)  # a Slack URL is a secret
    secret: bytes | None = field(default=None, repr=False)
    timeout_s: float = 5.0
    rate_per_minute: int = 60
    burst: int = 10
    email: EmailSettings | None = None


@dataclass(frozen=True)
class Route:
    """Which transitions go to which channels. Empty kinds = every kind; scopes are glob patterns."""

    channels: tuple[str, ...]
    scopes: tuple[str, ...] = ("*",)
    kinds: tuple[str, ...] = ()
    events: tuple[str, ...] = EVENTS
    min_severity: str = "info"
    digest_ms: int | None = None
    renotify_ms: int | None = None

    def matches(self, t: Transition) -> bool:
        return (t.event in self.events and (not self.kinds or t.kind in self.kinds)
                and SEVERITIES.index(t.severity) >= SEVERITIES.index(self.min_severity)
                and any(fnmatchcase(t.scope, pattern) for pattern in self.scopes))


@dataclass(frozen=True)
class DeliveryPolicy:
    retries: int = 6
    backoff_ms: int = 1000
    max_backoff_ms: int = 300_000
    disable_after: int = 5
    stale_after_ms: int = 86_400_000


@dataclass(frozen=True)
class NotifyConfig:
    channels: dict[str, ChannelConfig]
    routes: tuple[Route, ...]
    delivery: DeliveryPolicy = DeliveryPolicy()
    dashboard_url: str | None = None


class _Fields:
    """Typed reads of one mapping's fields, each problem reported with its line and path."""

    def __init__(self, node: yaml.Node, path: str, problems: Problems, allowed: tuple[str, ...],
                 fields: dict[str, tuple[yaml.Node, yaml.Node]] | None = None):
        self.node, self.path, self.problems = node, path, problems
        self.fields = fields if fields is not None else mapping(node, path, problems) or {}
        unknown_keys(self.fields, allowed, path, problems)

    def bad(self, name: str, message: str) -> None:
        self.problems.add(self.fields[name][1] if name in self.fields else self.node, f"{self.path}.{name}", message)

    def text(self, name: str, default: str | None = None) -> str | None:
        if name not in self.fields:
            return default
        raw = value(self.fields[name][1])
        if not isinstance(raw, str) or not raw:
            return self.bad(name, f"must be a non-empty string, got {describe(self.fields[name][1])}")
        return raw

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        if name not in self.fields:
            return default
        raw = value(self.fields[name][1])
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            self.bad(name, f"must be an integer from {low} to {high}, got {describe(self.fields[name][1])}")
            return default
        return raw

    def flag(self, name: str) -> bool:
        raw = value(self.fields[name][1]) if name in self.fields else False
        if not isinstance(raw, bool):
            self.bad(name, f"must be true or false, got {describe(self.fields[name][1])}")
            return False
        return raw

    def duration_ms(self, name: str, default: int | None) -> int | None:
        text = self.text(name)
        if text is None:
            return default
        try:
            return int(text[:-2]) if _MILLIS.match(text) else parse_duration_ms(text)
        except ValueError as exc:
            self.bad(name, str(exc))
            return default

    def texts(self, name: str, default: tuple[str, ...], choices: tuple[str, ...] = ()) -> tuple[str, ...]:
        if name not in self.fields:
            return default
        out = []
        for i, item in sequence(self.fields[name][1], f"{self.path}.{name}", self.problems):
            raw = value(item) if isinstance(item, yaml.ScalarNode) else None
            if not isinstance(raw, str) or not raw or (choices and raw not in choices):
                hint = f"one of {', '.join(choices)}" if choices else "a non-empty string"
                self.problems.add(item, f"{self.path}.{name}[{i}]", f"must be {hint}, got {describe(item)}")
            else:
                out.append(raw)
        return tuple(out)

    def secret(self, name: str, env: Mapping[str, str]) -> str | None:
        """The value of the environment variable this field names."""
        variable = self.text(name)
        if variable is not None and not env.get(variable):
            self.bad(name, f"environment variable {variable} is not set")
            return None
        return env.get(variable) if variable else None


def load_notifications(path: Path, env: Mapping[str, str], source: str | None = None) -> NotifyConfig:
    """The notifier's configuration from a file; ConfigError lists every problem."""
    source = source or str(path)
    return parse_notifications(compose_file(path, source), source, env)


def parse_notifications(root: yaml.Node | None, source: str, env: Mapping[str, str]) -> NotifyConfig:
    problems = Problems(source)
    config = NotifyConfig(channels={}, routes=())
    if root is None:
        problems.add(None, "", "the file is empty; expected a 'notifications:' mapping")
    elif (top := mapping(root, "", problems)) is not None:
        unknown_keys(top, ("notifications",), "", problems)
        if "notifications" not in top:
            problems.add(root, "", "missing the 'notifications:' mapping")
        else:
            config = _notifications(top["notifications"][1], problems, env)
    problems.raise_if_any("notifications")
    return config


def _notifications(node: yaml.Node, problems: Problems, env: Mapping[str, str]) -> NotifyConfig:
    f = _Fields(node, "notifications", problems, ("dashboard_url", "channels", "routes", "delivery"))
    dashboard_url = f.text("dashboard_url")
    if dashboard_url and not _is_http_url(dashboard_url):
        f.bad("dashboard_url", f"{dashboard_url!r} is not an http(s) URL")
    channels: dict[str, ChannelConfig] = {}
    named: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    if "channels" not in f.fields:
        f.bad("channels", "missing: name at least one channel")
    else:
        named = mapping(f.fields["channels"][1], "notifications.channels", problems) or {}
        for name, (_, channel_node) in named.items():
            channel = _channel(name, channel_node, problems, env)
            if channel is not None:
                channels[name] = channel
    routes: list[Route] = []
    if "routes" not in f.fields:
        f.bad("routes", "missing: add at least one route (channels: [...])")
    else:
        for i, route_node in sequence(f.fields["routes"][1], "notifications.routes", problems):
            routes.append(_route(route_node, f"notifications.routes[{i}]", problems, set(named)))
    delivery = (_delivery(f.fields["delivery"][1], problems) if "delivery" in f.fields else DeliveryPolicy())
    return NotifyConfig(channels=channels, routes=tuple(routes), delivery=delivery, dashboard_url=dashboard_url)


def _channel(name: str, node: yaml.Node, problems: Problems, env: Mapping[str, str]) -> ChannelConfig | None:
    path = f"notifications.channels.{name}"
    fields = mapping(node, path, problems)
    if fields is None:
        return None
    type_node = fields["type"][1] if "type" in fields else None
    kind = value(type_node) if type_node is not None else None
    if kind not in CHANNEL_TYPES:
        problems.add(type_node or node, f"{path}.type", f"must be one of {', '.join(CHANNEL_TYPES)}, "
                     f"got {describe(type_node)}")
        return None
    before = len(problems)
    f = _Fields(node, path, problems, _CHANNEL_FIELDS[kind], fields)
    timeout_ms = f.duration_ms("timeout", 5000)
    common: dict[str, Any] = {"name": name, "type": kind, "timeout_s": (timeout_ms or 5000) / 1000,
                              "rate_per_minute": f.integer("rate_per_minute", 60, 1, 100_000),
                              "burst": f.integer("burst", 10, 1, 100_000)}
    if kind == "email":
        common["email"] = _email(f, env)
    else:
        common["url"] = _url(f, env)
        if kind == "webhook":
            key = f.secret("secret_env", env)
            if "secret_env" not in f.fields:
                f.bad("secret_env", "missing: webhooks are signed; name the environment variable holding the key")
            common["secret"] = key.encode() if key else None
    return ChannelConfig(**common) if len(problems) == before else None


def _url(f: _Fields, env: Mapping[str, str]) -> str | None:
    if ("url" in f.fields) == ("url_env" in f.fields):
        f.bad("url", "give exactly one of 'url' or 'url_env' (an environment variable holding a secret URL)")
        return None
    url = f.text("url") if "url" in f.fields else f.secret("url_env", env)
    if url and not _is_http_url(url):
        f.bad("url" if "url" in f.fields else "url_env", "is not an http(s) URL")
    return url


def _email(f: _Fields, env: Mapping[str, str]) -> EmailSettings | None:
    host, sender = f.text("smtp_host"), f.text("from")
    recipients = f.texts("to", ())
    for name in ("smtp_host", "from", "to"):
        if name not in f.fields:
            f.bad(name, "missing required field")
    username, password = f.secret("username_env", env), f.secret("password_env", env)
    if (username is None) != (password is None):
        f.bad("username_env", "give both username_env and password_env, or neither")
    if not (host and sender and recipients):
        return None
    return EmailSettings(smtp_host=host, smtp_port=f.integer("smtp_port", 25, 1, 65535), sender=sender,
                         recipients=recipients, starttls=f.flag("starttls"), username=username, password=password)


def _route(node: yaml.Node, path: str, problems: Problems, known: set[str]) -> Route:
    f = _Fields(node, path, problems, _ROUTE_FIELDS)
    channels = f.texts("channels", ())
    if not channels and f.fields:
        f.bad("channels", "must name at least one channel")
    for channel in channels:
        if channel not in known:
            f.bad("channels", f"unknown channel {channel!r} (channels: {', '.join(sorted(known)) or 'none'})")
    severity = f.text("min_severity", "info")
    if severity not in SEVERITIES:
        f.bad("min_severity", f"must be one of {', '.join(SEVERITIES)}")
        severity = "info"
    return Route(channels=channels, scopes=f.texts("scopes", ("*",)), kinds=f.texts("kinds", ()),
                 events=f.texts("events", EVENTS, EVENTS), min_severity=severity or "info",
                 digest_ms=f.duration_ms("digest", None), renotify_ms=f.duration_ms("renotify", None))


def _delivery(node: yaml.Node, problems: Problems) -> DeliveryPolicy:
    f = _Fields(node, "notifications.delivery", problems, _DELIVERY_FIELDS)
    policy = DeliveryPolicy(retries=f.integer("retries", 6, 0, 100), backoff_ms=f.duration_ms("backoff", 1000) or 1000,
                            max_backoff_ms=f.duration_ms("max_backoff", 300_000) or 300_000,
                            disable_after=f.integer("disable_after", 5, 1, 10_000),
                            stale_after_ms=f.duration_ms("stale_after", 86_400_000) or 86_400_000)
    if policy.max_backoff_ms < policy.backoff_ms:
        f.bad("max_backoff", "must not be shorter than backoff")
    return policy


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
