"""Channel senders: one HTTP POST (webhook, Slack) or one SMTP submission (email) per message.

Plain urllib and smtplib rather than apprise: a webhook must be signed in our format with our
headers, and retry/disable decisions need the HTTP status (a 400 will never succeed, a 503 may),
which apprise reduces to True/False (docs/notifications.md).
"""

from __future__ import annotations

import json
import smtplib
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Callable, Protocol

from tokenfuse.errors import TokenfuseError
from tokenfuse.notify.config import ChannelConfig
from tokenfuse.notify.messages import Message, email_text, slack_payload, webhook_body
from tokenfuse.notify.signing import ID_HEADER, signed_headers

_RETRYABLE_STATUS = {408, 425, 429}


class DeliveryFailed(TokenfuseError):
    """One attempt failed. `retryable` is False when trying again cannot help (HTTP 4xx)."""

    def __init__(self, channel: str, reason: str, retryable: bool = True):
        self.channel, self.reason, self.retryable = channel, reason, retryable
        super().__init__(f"channel {channel}: {reason}")


class Sender(Protocol):
    name: str

    def send(self, msg: Message) -> None: ...


def _post(channel: str, url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "tokenfuse-notify",
                                              **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        retryable = exc.code >= 500 or exc.code in _RETRYABLE_STATUS
        raise DeliveryFailed(channel, f"HTTP {exc.code} {exc.reason}", retryable) from None
    except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(channel, f"cannot reach the receiver: {reason}") from None


@dataclass
class _ChannelSender:
    config: ChannelConfig
    dashboard_url: str | None

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class WebhookSender(_ChannelSender):
    clock: Callable[[], float] = time.time

    def send(self, msg: Message) -> None:
        body = webhook_body(msg, self.dashboard_url)
        assert self.config.secret and self.config.url  # the config refuses webhooks without them
        headers = {**signed_headers(self.config.secret, int(self.clock()), body), ID_HEADER: msg.id}
        _post(self.name, self.config.url, body, headers, self.config.timeout_s)


class SlackSender(_ChannelSender):
    def send(self, msg: Message) -> None:
        assert self.config.url
        _post(self.name, self.config.url, json.dumps(slack_payload(msg, self.dashboard_url)).encode(), {},
              self.config.timeout_s)


class EmailSender(_ChannelSender):
    def send(self, msg: Message) -> None:
        mail = self.config.email
        assert mail is not None
        subject, text = email_text(msg, self.dashboard_url)
        email = EmailMessage()
        email["Subject"], email["From"], email["To"] = subject, mail.sender, ", ".join(mail.recipients)
        email["X-Tokenfuse-Id"] = msg.id
        email.set_content(text)
        try:
            with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=self.config.timeout_s) as smtp:
                if mail.starttls:
                    smtp.starttls()
                if mail.username and mail.password:
                    smtp.login(mail.username, mail.password)
                smtp.send_message(email)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryFailed(self.name, f"SMTP {exc.smtp_code}", retryable=exc.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise DeliveryFailed(self.name, f"SMTP: {exc}") from None


def sender_for(config: ChannelConfig, dashboard_url: str | None) -> Sender:
    kinds: dict[str, type] = {"webhook": WebhookSender, "slack": SlackSender, "email": EmailSender}
    return kinds[config.type](config, dashboard_url)
