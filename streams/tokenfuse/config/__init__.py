"""Settings and user-written configuration files: `Settings` (every process role) and the YAML
reader that reports `file:line` for every problem."""

from tokenfuse.config.settings import Settings, config_error

__all__ = ["Settings", "config_error"]
