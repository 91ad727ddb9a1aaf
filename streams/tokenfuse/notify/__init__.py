"""The notifier: alerts and kill-switch transitions to webhooks, Slack and email (docs/notifications.md)."""
