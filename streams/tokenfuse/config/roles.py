"""What each process role needs from the shared Settings, checked at start-up: a role missing a
setting it needs stops with every missing setting named, before it touches Kafka."""

from __future__ import annotations

from tokenfuse.config.settings import Settings
from tokenfuse.errors import ConfigError

# role -> {setting: why the role needs it}
REQUIRED: dict[str, dict[str, str]] = {
    "worker": {"control_key": "signs the control states it publishes",
               "budget_keys": "verifies the budgets it applies"},
    "operator": {"control_key": "signs manual kill and release states"},
    "budget operator": {"budget_keys": "signs the budgets it publishes"},
    "sink": {},
    "autopilot": {"budget_keys": "verifies the budgets and approvals it reads, signs the budgets it adjusts"},
    "notifier": {"control_key": "verifies the control states it tells people about"},
    "dashboard": {"control_key": "verifies the control states it shows, signs the operator's kill and release"},
}


def require(settings: Settings, role: str) -> Settings:
    """`settings`, if it has what `role` needs; else a ConfigError listing every missing one."""
    missing = [f"TOKENFUSE_{name.upper()}: required by the {role} ({why})"
               for name, why in REQUIRED[role].items() if getattr(settings, name) is None]
    if missing:
        raise ConfigError(f"invalid settings for the {role}:", missing)
    return settings


def settings_for(role: str) -> Settings:
    """The role's settings from the environment (the one explicit place that reads it)."""
    return require(Settings.from_env(), role)
