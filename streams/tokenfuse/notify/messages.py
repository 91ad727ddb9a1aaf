"""What a notification says, per channel type: a JSON document for webhooks, a readable Slack
message, an email. One `Message` is what one channel receives: one transition, a reminder
(re-notify) or a digest of many."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from tokenfuse.notify.transitions import Source, Transition

DIGEST_LINES = 20
_TITLES = {"fired": "Alert", "cleared": "Cleared", "blocked": "Blocked", "released": "Released"}
_ICONS = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


@dataclass(frozen=True)
class Message:
    id: str  # X-Tokenfuse-Id: stable across retries and notifier restarts
    channel: str
    notices: tuple[Transition, ...]
    form: str = "single"  # single | digest | reminder
    sources: tuple[Source, ...] = ()


def amount(metric: str | None, number: int | None) -> str:
    if number is None:
        return "?"
    if metric == "cost_micro_usd":
        return f"${number / 1_000_000:,.2f}"
    return f"{number:,} {(metric or '').replace('_', ' ')}".rstrip()


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def scope_link(dashboard_url: str | None, scope: str) -> str | None:
    # The dashboard's scope page (dashboard/static/common.js links it the same way).
    return f"{dashboard_url.rstrip('/')}/scope?key={quote(scope, safe='')}" if dashboard_url else None


def spend(t: Transition) -> str:
    if t.spent is None and t.limit is None:
        return ""
    percent = f" ({100 * t.spent / t.limit:.0f}%)" if t.spent is not None and t.limit else ""
    return f"{amount(t.metric, t.spent)} of {amount(t.metric, t.limit)}{percent}"


def summary(t: Transition) -> str:
    """One line: `Blocked team:acme/search: $12.30 of $10.00 (123%), budget b1, until ...`."""
    parts = [spend(t)]
    if t.budget_id:
        parts.append(f"budget {t.budget_id}")
    if t.kind not in ("threshold", "manual"):
        parts.append(f"kind {t.kind}")
    if t.until:
        parts.append(f"until {when(t.until)}")
    if t.eta:
        parts.append(f"ETA {when(t.eta)}")
    if t.message and not t.spent:
        parts.append(t.message)
    return f"{_TITLES[t.event]} {t.scope}: " + ", ".join(p for p in parts if p)


def title(msg: Message) -> str:
    if msg.form == "digest":
        return f"tokenfuse digest: {len(msg.notices)} notifications"
    prefix = "Still " if msg.form == "reminder" else ""
    t = msg.notices[0]
    return f"tokenfuse: {prefix}{_TITLES[t.event].lower() if prefix else _TITLES[t.event]} {t.scope}"


def webhook_body(msg: Message, dashboard_url: str | None) -> bytes:
    notices = [{**t.as_dict(), "summary": summary(t), "dashboard_url": scope_link(dashboard_url, t.scope)}
               for t in msg.notices]
    doc: dict[str, Any] = {"id": msg.id, "form": msg.form, "title": title(msg)}
    doc.update(notices[0] if msg.form != "digest" else {"notifications": notices})
    doc["id"] = msg.id
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def slack_payload(msg: Message, dashboard_url: str | None) -> dict[str, Any]:
    """Slack incoming-webhook payload: `text` is the notification fallback, blocks the body."""
    lines = []
    for t in msg.notices[:DIGEST_LINES]:
        link = scope_link(dashboard_url, t.scope)
        scope = f"<{link}|{t.scope}>" if link else f"`{t.scope}`"
        lines.append(f"{_ICONS[t.severity]} *{_TITLES[t.event]}* {scope}: " + summary(t).split(": ", 1)[1])
    if len(msg.notices) > DIGEST_LINES:
        lines.append(f"… and {len(msg.notices) - DIGEST_LINES} more")
    return {"text": title(msg) if msg.form == "digest" else summary(msg.notices[0]),
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": title(msg)[:150]}},
                       {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}}]}


def email_text(msg: Message, dashboard_url: str | None) -> tuple[str, str]:
    """(subject, plain-text body)."""
    body = []
    for t in msg.notices:
        body.append(summary(t))
        body.append(f"  at {when(t.occurred_at)}, severity {t.severity}")
        if link := scope_link(dashboard_url, t.scope):
            body.append(f"  {link}")
    return title(msg), "\n".join(body) + f"\n\nid: {msg.id}\n"
