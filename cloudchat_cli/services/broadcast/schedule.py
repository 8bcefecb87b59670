"""When a broadcast may send: quiet hours (``--between 08:00-20:00 --tz Asia/Jakarta``) and a
later start (``--at "2026-12-01 08:00"``).

Every function takes the time as an argument (a Unix timestamp), so tests drive it with any
clock. Hours are wall-clock hours in the zone: a window keeps meaning 08:00-20:00 across a
daylight-saving change, and one whose start is after its end (22:00-06:00) crosses midnight.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloudchat_cli.core import environment
from cloudchat_cli.core.errors import UsageError

_HHMM = r"([01]?\d|2[0-4]):([0-5]\d)"
_BETWEEN = re.compile(rf"^\s*{_HHMM}\s*[-–—]\s*{_HHMM}\s*$")
_AT = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
DAY_MINUTES = 24 * 60
MIN_YEAR, MAX_YEAR = 1970, 9998


def zone(name: str | None) -> tzinfo:
    """The IANA zone ``name``, or the system's zone (TZ, then /etc/localtime)."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise UsageError(f"--tz: unknown time zone {name!r}",
                             hint="use an IANA name like Asia/Jakarta or Europe/Berlin (the "
                             "system's time-zone database, tzdata, must be installed)") from None
    return system_zone()


def system_zone(env: Mapping[str, str] | None = None) -> tzinfo:
    """The system's zone: ``TZ`` (the invocation's unless ``env`` is given), then
    /etc/localtime."""
    env = environment.current().env if env is None else env
    env = env.get("TZ", "").lstrip(":")
    candidates = [env] if env else []
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for key in candidates:
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return datetime.now().astimezone().tzinfo or ZoneInfo("UTC")


def _minutes(hours: str, minutes: str, text: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if value > DAY_MINUTES:
        raise UsageError(f"--between: {text!r} is not a time of day")
    return value


@dataclass(frozen=True)
class QuietHours:
    """Send only from ``start`` to ``end`` (minutes after midnight, local wall time)."""

    start: int
    end: int
    tz: tzinfo

    @classmethod
    def parse(cls, text: str, tz: tzinfo) -> QuietHours:
        match = _BETWEEN.match(text)
        if not match:
            raise UsageError(f"--between: expected HH:MM-HH:MM like 08:00-20:00, got {text!r}")
        start = _minutes(match.group(1), match.group(2), text) % DAY_MINUTES
        end = _minutes(match.group(3), match.group(4), text)
        if end == start:
            raise UsageError(f"--between {text}: the window is empty (start = end)",
                             hint="leave --between out to send at any hour")
        return cls(start, end, tz)

    def text(self) -> str:
        return f"{_hhmm(self.start)}–{_hhmm(self.end)} {zone_label(self.tz, None)}"

    def _at(self, day: date, minutes: int) -> float:
        """The timestamp of ``minutes`` after local midnight of ``day`` (wall-clock)."""
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        return (midnight + timedelta(minutes=minutes)).timestamp()

    def _candidates(self, ts: float, minutes: int) -> list[float]:
        today = datetime.fromtimestamp(ts, self.tz).date()
        return sorted(self._at(today + timedelta(days=d), minutes) for d in (-1, 0, 1, 2))

    def is_open(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, self.tz)
        now = local.hour * 60 + local.minute + local.second / 60
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_open(self, ts: float) -> float:
        """``ts`` itself when open, else when the window next opens."""
        if self.is_open(ts):
            return ts
        return next(t for t in self._candidates(ts, self.start) if t > ts)

    def closes(self, ts: float) -> float:
        """When the open window holding ``ts`` closes."""
        return next(t for t in self._candidates(ts, self.end) if t > ts)

    def spans(self, ts: float) -> Iterator[tuple[float, float]]:
        """The open periods from ``ts`` on: (start, end), the first one maybe already begun."""
        while True:
            ts = self.next_open(ts)
            end = self.closes(ts)
            yield ts, end
            ts = end


def parse_at(text: str, tz: tzinfo, now: float) -> float:
    """``--at "2026-12-01 08:00"`` in ``tz`` → a timestamp; a time already past is refused."""
    match = _AT.match(text)
    if not match:
        raise UsageError(f"--at: expected \"YYYY-MM-DD HH:MM\", got {text!r}")
    y, mo, d, h, mi, s = (int(g or 0) for g in match.groups())
    if not MIN_YEAR <= y <= MAX_YEAR:  # the schedule runs days past it: stay inside datetime
        raise UsageError(f"--at {text}: the year must be {MIN_YEAR} to {MAX_YEAR}")
    try:
        when = datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp()
    except ValueError as exc:
        raise UsageError(f"--at {text}: {exc}") from None
    if when <= now:
        raise UsageError(
            f"--at {text} ({zone_label(tz, when)}) is in the past (now "
            f"{datetime.fromtimestamp(now, tz):%Y-%m-%d %H:%M})",
            hint="give a later time, or leave --at out to start now")
    return when


def make_gate(hours: QuietHours | None, at: float | None) -> Callable[[float], float | None]:
    """``gate(now)``: None while sending is allowed, else the time it next is."""

    def gate(now: float) -> float | None:
        when = max(now, at or now)
        if hours is not None:
            when = hours.next_open(when)
        return when if when > now else None

    return gate


def zone_label(tz: tzinfo, ts: float | None) -> str:
    """A zone's short name where it has one (``WIB``), else its IANA key or UTC offset."""
    moment = datetime.fromtimestamp(ts if ts is not None else datetime.now().timestamp(), tz)
    name = moment.tzname() or ""
    if name and name[0] not in "+-":
        return name
    return getattr(tz, "key", None) or name or "UTC"


def when_label(ts: float, tz: tzinfo, now: float) -> str:
    """``08:00 WIB`` today, ``Tue 10:05 WIB`` within a week, else with the date."""
    moment = datetime.fromtimestamp(ts, tz)
    today = datetime.fromtimestamp(now, tz).date()
    if moment.date() == today:
        text = f"{moment:%H:%M}"
    elif 0 < (moment.date() - today).days < 7:
        text = f"{moment:%a %H:%M}"
    else:
        text = f"{moment:%a %Y-%m-%d %H:%M}"
    return f"{text} {zone_label(tz, ts)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
