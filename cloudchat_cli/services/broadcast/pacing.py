"""A broadcast's etiquette: its share of the App's limit, its spacing, its hours, and the
schedule (and so the ETA) that follows from them.

The share and the spacing become a ``Budget`` on the throttle (core/throttle.py): the same
shared window as every other sender of the key, so the App's limit is never exceeded, the
broadcast never takes more than its share, and the rest stays free for everything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from cloudchat_cli.core import rate as rates
from cloudchat_cli.core.durations import fmt_duration
from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.core.throttle import MAX_PACE, Budget, Throttle
from cloudchat_cli.services.broadcast import schedule
from cloudchat_cli.services.broadcast.schedule import QuietHours

MAX_SPANS = 100_000  # quiet-hours windows walked for an ETA (a short window, a huge CSV)


@dataclass(frozen=True)
class Pacing:
    """At most ``limit`` sends per ``window`` (+ ``margin``), one every ``spacing`` seconds."""

    window: float
    margin: float
    limit: int
    spacing: float
    mode: str  # auto | burst | fixed
    rate: float  # the share asked for, requests per second
    rate_text: str  # as written ("40/min"), or the App's limit
    rate_source: str  # flag | setting (where) | rate_limit
    app_limit: int = 0  # the App's rate_limit per window

    @property
    def period(self) -> float:
        """How long a slot is held after its answer: the window plus the margin."""
        return self.window + self.margin

    def _batched(self) -> bool:
        return self.limit * self.spacing < self.period

    def offset(self, k: int) -> float:
        """When the k-th send (from 0) goes out, counted from the first, in an open window."""
        if not self._batched():
            return k * self.spacing
        return (k // self.limit) * self.period + (k % self.limit) * self.spacing

    def capacity(self, span: float) -> int:
        """How many sends fit into an open window of ``span`` seconds."""
        if span <= 0:
            return 0
        if not self._batched():
            return math.ceil(span / self.spacing)
        starts = math.ceil(span / self.period)  # batches that begin inside the span
        full = min(starts, max(0, math.ceil((span - (self.limit - 1) * self.spacing)
                                            / self.period)))
        count = full * self.limit
        for j in range(full, starts):  # at most one or two: (limit-1)·spacing < period
            rest = span - j * self.period
            count += min(self.limit, math.ceil(rest / self.spacing)) if self.spacing else 0
        return count

    @property
    def sustained(self) -> float:
        """Requests per second over a long run."""
        return (self.limit / self.period) if self._batched() else 1 / self.spacing

    def budget(self, name: str) -> Budget:
        return Budget(name, self.limit, self.spacing)


def parse_spacing(text: str | None) -> tuple[str, float | None]:
    value = (text or "auto").strip().lower()
    if value in ("auto", "burst"):
        return value, None
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"--spacing: expected auto, burst or seconds, got {text!r}") from None
    if not 0 <= seconds <= MAX_PACE:
        raise UsageError(f"--spacing: seconds must be 0 to {MAX_PACE:g}, got {text!r}")
    return ("burst", None) if seconds == 0 else ("fixed", seconds)


def resolve_pacing(rate_flag: str | None, spacing: str | None, cfg: Any) -> Pacing:
    """The broadcast's share and spacing, from --rate / ``broadcast_rate`` / the App's limit;
    a share above the App's limit is refused (the server would refuse it anyway)."""
    window, limit = cfg.rate_window, cfg.rate_limit
    app = limit / window
    if rate_flag is not None:
        try:
            per_second, text = rates.parse_rate(rate_flag)
        except ValueError as exc:
            raise UsageError(f"--rate {exc}") from None
        source, what = "flag", f"--rate {text}"
    elif cfg.broadcast_rate:
        per_second, text = rates.parse_rate(cfg.broadcast_rate)
        where = cfg.source("broadcast_rate").describe_source()
        source, what = where, f"broadcast_rate {text} (from {where})"
    else:
        per_second, text, source, what = app, f"{limit}/{window:g}s", "rate_limit", ""
    if per_second > app * (1 + 1e-9):
        raise UsageError(
            f"{what} is above the App's limit of {limit} per {window:g} s "
            f"({rates.per_minute(app)})",
            hint="choose a share of it (the rest stays free for the App's own traffic), or "
            "raise rate_limit if the App's limit really is higher")
    per_window = per_second * window
    mode, seconds = parse_spacing(spacing)
    # Below one request per window, only the spacing can hold the rate down.
    floor = 1 / per_second if per_window < 1 else 0.0
    if mode == "auto":
        # One every 1/rate: exact for any rate (90/h: one every 40 s), the share rounded up
        # so the spacing, not the window, sets the pace (at most the App's limit: rate ≤ it).
        share = min(limit, max(1, math.ceil(per_window - 1e-9)))
        return Pacing(window, cfg.rate_margin, share, 1 / per_second, mode, per_second, text,
                      source, limit)
    # burst and fixed send bunched: a window holds a whole number of requests (rounded down).
    share = max(1, math.floor(per_window + 1e-9))
    gap = floor if mode == "burst" else max(seconds or 0.0, floor)
    return Pacing(window, cfg.rate_margin, share, gap, mode, per_second, text, source, limit)


@dataclass(frozen=True)
class Etiquette:
    """Pacing plus when sending is allowed: the whole plan of a run in time."""

    pacing: Pacing
    tz: tzinfo
    hours: QuietHours | None = None
    at: float | None = None

    def start(self, now: float) -> float:
        return max(now, self.at or now)

    def finish(self, now: float, n: int) -> float:
        """When the last of ``n`` sends goes out, starting ``now`` (math.inf: beyond reach)."""
        done = self._finish(now, n)
        try:
            datetime.fromtimestamp(done, self.tz)
        except (OverflowError, ValueError, OSError):
            return math.inf  # past the year 9999: not a time anyone can be shown
        return done

    def _finish(self, now: float, n: int) -> float:
        start = self.start(now)
        if n <= 0:
            return start
        if self.hours is None:
            return start + self.pacing.offset(n - 1)
        try:
            for i, (begin, end) in enumerate(self.hours.spans(start)):
                fits = self.pacing.capacity(end - begin)
                if n <= fits:
                    return begin + self.pacing.offset(n - 1)
                n -= fits
                if i >= MAX_SPANS:
                    break
        except (OverflowError, ValueError):  # walked past the year 9999
            pass
        return math.inf

    def remaining(self, now: float, n: int) -> float:
        return max(0.0, self.finish(now, n) - now)

    def label(self, ts: float, now: float) -> str:
        return schedule.when_label(ts, self.tz, now)

    def rate_shown(self) -> str:
        return rates.per_minute(self.pacing.sustained)

    def spacing_shown(self) -> str:
        p = self.pacing
        if p.spacing and p.spacing * p.limit >= p.window / 2:
            return f"one every {rates.seconds_text(p.spacing)}"
        if p.limit == 1:
            return f"one every {rates.seconds_text(max(p.spacing, p.period))}"
        apart = f", {rates.seconds_text(p.spacing)} apart" if p.spacing else ""
        return f"bursts of up to {p.limit}{apart} every {rates.seconds_text(p.period)}"

    def rounding_note(self) -> str | None:
        """Why the rate is below the one asked for (burst/fixed: whole requests per window)."""
        p = self.pacing
        if p.mode == "auto" or p.limit >= p.rate * p.window - 1e-9 or p.spacing >= 1 / p.rate:
            return None
        return (f"--rate {p.rate_text} is {p.limit} per {rates.seconds_text(p.window)} window "
                f"with --spacing {p.mode if p.mode == 'burst' else rates.seconds_text(p.spacing)}"
                f": {rates.per_minute(p.limit / p.window)}; --spacing auto keeps the exact rate")

    def describe(self, n: int, now: float) -> str:
        """``5,000 messages at 40/min (one every 1.5 s) between 08:00–20:00 WIB: done Tue 10:05
        WIB (in 14:35:00)``."""
        text = f"{n:,} message(s) at {self.rate_shown()} ({self.spacing_shown()})"
        if (note := self.rounding_note()) is not None:
            text += f" [{note}]"
        if self.hours is not None:
            text += f" between {self.hours.text()}"
        if self.at is not None:
            text += f", starting {schedule.when_label(self.at, self.tz, now)}"
        done = self.finish(now, n)
        if math.isinf(done):
            return text + ": done — not within any reachable window"
        return (f"{text}: done {schedule.when_label(done, self.tz, now)} "
                f"(in {fmt_duration(done - now)})")

    def as_json(self, n: int, now: float) -> dict[str, Any]:
        p = self.pacing
        done = self.finish(now, n)

        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, self.tz).isoformat(timespec="seconds")

        return {
            "rate": p.rate_text,
            "rate_source": p.rate_source,
            "share": {"requests": p.limit, "window_seconds": p.window},
            "sustained_per_minute": round(p.sustained * 60, 2),
            "spacing": {"mode": p.mode, "seconds": round(p.spacing, 3)},
            "between": None if self.hours is None else self.hours.text(),
            "tz": getattr(self.tz, "key", None) or schedule.zone_label(self.tz, now),
            "start_at": iso(self.at) if self.at is not None else None,
            "eta_seconds": None if math.isinf(done) else round(done - now, 1),
            "done_at": None if math.isinf(done) else iso(done),
            "summary": self.describe(n, now),
        }

    def gate(self) -> Callable[[float], float | None] | None:
        if self.hours is None and self.at is None:
            return None
        return schedule.make_gate(self.hours, self.at)

    def apply(self, throttle: Throttle | None, name: str,
              on_pause: Callable[[float | None], None] | None = None) -> None:
        """Make ``throttle`` spend only this broadcast's share, spaced, in its hours."""
        if throttle is None:
            return
        throttle.budget = self.pacing.budget(name)
        throttle.gate = self.gate()
        throttle.on_pause = on_pause


def prepare(cfg: Any, *, rate: str | None, spacing: str | None, between: str | None,
            tz: str | None, at: str | None, now: float) -> Etiquette:
    """Check every etiquette option before anything is written (bad input: exit 2)."""
    zone = schedule.zone(tz)
    pacing = resolve_pacing(rate, spacing, cfg)
    hours = QuietHours.parse(between, zone) if between else None
    start = schedule.parse_at(at, zone, now) if at else None
    etiquette = Etiquette(pacing, zone, hours, start)
    if hours is not None:
        try:
            hours.next_open(etiquette.start(now))
        except (OverflowError, ValueError):
            raise UsageError(f"--at {at} --between {between}: no sending window before the "
                             "year 9999 ends") from None
    return etiquette
