"""Budget windows: tumbling fixed sizes, calendar day/month in a time zone, rolling.

All times are epoch milliseconds UTC. A window spec string is what a budget names:
  - tumbling: `1m` ... `7d` (units s, m, h, d; whole seconds, at least 1s, at most 7d)
  - calendar: `day` or `month`, in the budget's IANA time zone
  - rolling:  `rolling:60s` (the last 60 s, for rate limits; at most 1h)

Each kind is one class: its bounds, and how a scope record keeps its totals (`new_state`, `add`,
`window_at`, and the JSON form of that state, which is part of the worker's changelog). A new
kind is a new class here plus a case in `parse_window` (docs/extending.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^(\d+)([smhd])$")
MAX_TUMBLING_MS = 7 * 86_400_000
MAX_ROLLING_MS = 3_600_000
DAY_MS = 86_400_000

# Totals vectors, in this order: [input, output, cached, cost_micro_usd, events].
FIELDS = ("input_tokens", "output_tokens", "cached_tokens", "cost_micro_usd", "events")

# Discrete windows kept per kind: the newest two, and any that ended within RETAIN_MS of the
# scope's newest event. Lateness is judged per input partition, so one partition may still send
# on-time usage for a window another partition has moved past (after a restart, during a
# catch-up); ten minutes of skew keep short windows exact.
KEEP_WINDOWS = 2
RETAIN_MS = 600_000


class Window(NamedTuple):
    start: int
    end: int
    totals: list[int]  # see FIELDS


def metric(totals: list[int], name: str) -> int:
    if name == "total_tokens":
        return totals[0] + totals[1]
    return totals[FIELDS.index(name)]


def add_totals(into: list[int], vec: list[int]) -> None:
    into[0] += vec[0]
    into[1] += vec[1]
    into[2] += vec[2]
    into[3] += vec[3]
    into[4] += vec[4]


def parse_duration_ms(text: str) -> int:
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h or 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


class WindowSpec:
    """What every window kind provides. Subclasses are frozen dataclasses (hashable)."""

    kind: ClassVar[str]
    # Thresholds fire once per window; a window kind without discrete windows re-arms them
    # once spend falls back below (rolling).
    re_arms: ClassVar[bool] = False
    # Tracked from when a budget first names it, not only from TOKENFUSE_WINDOWS (calendar
    # windows in a new time zone).
    tracked_on_demand: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """A stable name, part of record keys: `3600s`, `day@Europe/Paris`, `rolling:60s`."""
        raise NotImplementedError

    def bounds(self, ts_ms: int) -> tuple[int, int]:
        """[start, end) of the window holding ts_ms."""
        raise NotImplementedError

    @property
    def grid_ms(self) -> int:
        """A span that divides every boundary of this kind (window or bucket edges)."""
        raise NotImplementedError

    @property
    def horizon_ms(self) -> int:
        """The longest a window of this kind lasts: a scope idle for longer holds nothing in it."""
        raise NotImplementedError

    # How a scope record keeps this window's totals (state: JSON-able once dumped).
    def new_state(self) -> Any:
        raise NotImplementedError

    def add(self, state: Any, ts: int, vec: list[int], newest_ms: int) -> bool:
        """Add `vec` at time `ts`; False if `ts` falls in a window older than those kept."""
        raise NotImplementedError

    def window_at(self, state: Any, ts: int) -> Window:
        """The window holding ts (zeros if nothing was spent in it)."""
        raise NotImplementedError

    def fired_key(self, window: Window) -> str:
        return "rolling" if self.re_arms else str(window.start)

    def kept_keys(self, state: Any) -> set[str]:
        """The fired_keys of the windows the state still keeps (others can no longer change)."""
        return {"rolling"} if self.re_arms else {str(w[0]) for w in state}

    def until(self, window: Window) -> int:
        """Until when a block decided on this window lasts."""
        return window.end

    def dump_state(self, state: Any) -> Any:
        return state

    def load_state(self, data: Any) -> Any:
        return data


class _Discrete(WindowSpec):
    """Windows with a start and an end: the state is [[start, end, totals], ...], newest first."""

    def new_state(self) -> list[list[Any]]:
        return []

    def add(self, state: list[list[Any]], ts: int, vec: list[int], newest_ms: int) -> bool:
        # Usually the time falls in a window already kept: no bounds to compute (calendar
        # bounds take a time-zone conversion). The hottest loop of the engine (once per delta
        # and tracked window): the totals are added inline.
        for w in state:
            if w[0] <= ts < w[1]:
                t = w[2]
                t[0] += vec[0]
                t[1] += vec[1]
                t[2] += vec[2]
                t[3] += vec[3]
                t[4] += vec[4]
                return True
        start, end = self.bounds(ts)
        match = [start, end, [0, 0, 0, 0, 0]]
        if not state:  # a new scope's first delta
            state.append(match)
            add_totals(match[2], vec)
            return True
        state.append(match)
        state.sort(key=lambda w: -w[0])
        horizon = newest_ms - RETAIN_MS
        state[KEEP_WINDOWS:] = [w for w in state[KEEP_WINDOWS:] if w[1] > horizon]
        if match not in state:
            return False
        add_totals(match[2], vec)
        return True

    def window_at(self, state: list[list[Any]], ts: int) -> Window:
        for w in state:
            if w[0] <= ts < w[1]:
                return Window(*w)
        start, end = self.bounds(ts)
        return Window(start, end, [0, 0, 0, 0, 0])


@dataclass(frozen=True)
class Tumbling(_Discrete):
    size_ms: int
    kind: ClassVar[str] = "tumbling"

    @cached_property
    def name(self) -> str:
        return f"{self.size_ms // 1000}s"

    def bounds(self, ts_ms: int) -> tuple[int, int]:
        start = ts_ms - ts_ms % self.size_ms
        return start, start + self.size_ms

    @property
    def grid_ms(self) -> int:
        return self.size_ms

    @property
    def horizon_ms(self) -> int:
        return self.size_ms


@dataclass(frozen=True)
class Calendar(_Discrete):
    unit: str  # "day" | "month"
    timezone: str = "UTC"
    kind: ClassVar[str] = "calendar"
    tracked_on_demand: ClassVar[bool] = True

    @cached_property
    def name(self) -> str:
        return f"{self.unit}@{self.timezone}"

    def bounds(self, ts_ms: int) -> tuple[int, int]:
        return _calendar_bounds(ts_ms, self.unit, self.timezone)

    @property
    def grid_ms(self) -> int:
        return 60_000  # calendar boundaries fall on whole minutes in every current time zone

    @property
    def horizon_ms(self) -> int:
        return 31 * DAY_MS if self.unit == "month" else DAY_MS


@dataclass(frozen=True)
class Rolling(WindowSpec):
    """The last `size_ms`, at the resolution of buckets of size/12 (at least 1 s): the state is
    {bucket start: totals}; buckets out of every window's reach are dropped as time moves on."""

    size_ms: int
    kind: ClassVar[str] = "rolling"
    re_arms: ClassVar[bool] = True

    @cached_property
    def name(self) -> str:
        return f"rolling:{self.size_ms // 1000}s"

    @cached_property
    def step_ms(self) -> int:
        return max(1000, self.size_ms // 12)

    def bounds(self, ts_ms: int) -> tuple[int, int]:
        return ts_ms - self.size_ms, ts_ms

    @property
    def grid_ms(self) -> int:
        return self.step_ms

    @property
    def horizon_ms(self) -> int:
        return self.size_ms

    def until(self, window: Window) -> int:
        return window.end + self.size_ms

    def new_state(self) -> dict[int, list[int]]:
        return {}

    def add(self, state: dict[int, list[int]], ts: int, vec: list[int], newest_ms: int) -> bool:
        step = self.step_ms
        key = ts - ts % step
        bucket = state.get(key)
        if bucket is None:  # time moved on by a bucket: drop those out of every window's reach
            state[key] = list(vec)
            horizon = newest_ms - self.size_ms - step
            for old in [k for k in state if k <= horizon]:
                del state[old]
            return True
        add_totals(bucket, vec)
        return True

    def window_at(self, state: dict[int, list[int]], ts: int) -> Window:
        """The sum of the buckets starting inside (ts - size, ts]."""
        total = [0, 0, 0, 0, 0]
        low = ts - self.size_ms
        for start, vec in state.items():
            if low < start <= ts:
                add_totals(total, vec)
        return Window(low, ts, total)

    def dump_state(self, state: dict[int, list[int]]) -> list[list[Any]]:
        return [[k, v] for k, v in state.items()]

    def load_state(self, data: list[list[Any]] | dict[str, list[int]]) -> dict[int, list[int]]:
        items = data.items() if isinstance(data, dict) else data  # a dict of str keys before 0.2
        return {int(k): v for k, v in items}


def parse_window(text: str, timezone: str = "UTC") -> WindowSpec:
    """Parse a budget's window; ValueError says what is wrong."""
    if text in ("day", "month"):
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Paris)") from None
        return Calendar(text, timezone)
    if text.startswith("rolling:"):
        size = parse_duration_ms(text.removeprefix("rolling:"))
        if size > MAX_ROLLING_MS:
            raise ValueError(f"rolling window {text!r} is longer than 1h; use a tumbling window")
        return Rolling(size)
    try:
        size = parse_duration_ms(text)
    except ValueError:
        raise ValueError(f"window {text!r} must be a duration (1m...7d), 'day', 'month' or 'rolling:<duration>'") from None
    if size > MAX_TUMBLING_MS:
        raise ValueError(f"window {text!r} is longer than 7d; use 'month'")
    return Tumbling(size)


@lru_cache(maxsize=256)
def spec_named(name: str) -> WindowSpec:
    """The spec a `WindowSpec.name` stands for (names are stored in scope records)."""
    if name.startswith("rolling:"):
        return parse_window(name)
    unit, at, timezone = name.partition("@")
    if at:
        return parse_window(unit, timezone)
    return Tumbling(parse_duration_ms(name))


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
    return _calendar_bounds_of_minute(ts_ms // 60_000, unit, timezone)


@lru_cache(maxsize=4096)
def _calendar_bounds_of_minute(minute: int, unit: str, timezone: str) -> tuple[int, int]:
    """Calendar boundaries fall on whole minutes in every current time zone."""
    local = datetime.fromtimestamp(minute * 60, ZoneInfo(timezone))
    return _calendar_bounds_cached(unit, timezone, local.year, local.month, local.day if unit == "day" else 1)
