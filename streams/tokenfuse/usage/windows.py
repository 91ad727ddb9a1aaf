"""Budget windows: tumbling fixed sizes, calendar day/month in a time zone, rolling.

All times are epoch milliseconds UTC. A window spec string is what a budget names:
  - tumbling: `1m` ... `7d` (units s, m, h, d; whole seconds, at least 1s, at most 7d)
  - calendar: `day` or `month`, in the budget's IANA time zone
  - rolling:  `rolling:60s` (the last 60 s, for rate limits; at most 1h)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^(\d+)([smhd])$")
MAX_TUMBLING_MS = 7 * 86_400_000
MAX_ROLLING_MS = 3_600_000


def parse_duration_ms(text: str) -> int:
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h or 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class WindowSpec:
    kind: str  # "tumbling" | "calendar" | "rolling"
    size_ms: int = 0  # tumbling and rolling
    unit: str = ""  # calendar: "day" | "month"
    timezone: str = "UTC"

    @property
    def name(self) -> str:
        """A stable name, part of table keys: `1h`, `day@Europe/Paris`, `rolling:60s`."""
        if self.kind == "calendar":
            return f"{self.unit}@{self.timezone}"
        seconds = f"{self.size_ms // 1000}s"
        return f"rolling:{seconds}" if self.kind == "rolling" else seconds

    def bounds(self, ts_ms: int) -> tuple[int, int]:
        """[start, end) of the window holding ts_ms; for rolling, the window ending at ts_ms."""
        if self.kind == "tumbling":
            start = ts_ms - ts_ms % self.size_ms
            return start, start + self.size_ms
        if self.kind == "rolling":
            return ts_ms - self.size_ms, ts_ms
        return _calendar_bounds(ts_ms, self.unit, self.timezone)


def parse_window(text: str, timezone: str = "UTC") -> WindowSpec:
    """Parse a budget's window; ValueError says what is wrong."""
    if text in ("day", "month"):
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Paris)") from None
        return WindowSpec("calendar", unit=text, timezone=timezone)
    if text.startswith("rolling:"):
        size = parse_duration_ms(text.removeprefix("rolling:"))
        if size > MAX_ROLLING_MS:
            raise ValueError(f"rolling window {text!r} is longer than 1h; use a tumbling window")
        return WindowSpec("rolling", size_ms=size)
    try:
        size = parse_duration_ms(text)
    except ValueError:
        raise ValueError(f"window {text!r} must be a duration (1m...7d), 'day', 'month' or 'rolling:<duration>'") from None
    if size > MAX_TUMBLING_MS:
        raise ValueError(f"window {text!r} is longer than 7d; use 'month'")
    return WindowSpec("tumbling", size_ms=size)


@lru_cache(maxsize=4096)
def _calendar_bounds_cached(unit: str, timezone: str, year: int, month: int, day: int) -> tuple[int, int]:
    tz = ZoneInfo(timezone)
    if unit == "day":
        start = datetime(year, month, day, tzinfo=tz)
        end = datetime.combine(start.date() + timedelta(days=1), start.time(), tzinfo=tz)
    else:
        start = datetime(year, month, 1, tzinfo=tz)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _calendar_bounds(ts_ms: int, unit: str, timezone: str) -> tuple[int, int]:
    local = datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(timezone))
    return _calendar_bounds_cached(unit, timezone, local.year, local.month, local.day if unit == "day" else 1)
