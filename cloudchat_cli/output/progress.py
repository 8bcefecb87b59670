"""Broadcast progress on stderr: a rich bar on a TTY, a log line every N rows or 30 s otherwise.

With a ``schedule`` (the run's pacing.Etiquette) the remaining time and the rate shown come
from the limiter's schedule (share, spacing, window, quiet hours), not from the bursts seen so
far: a paced run's instantaneous rate says nothing about when it ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cloudchat_cli.core.durations import fmt_duration
from cloudchat_cli.output import console

LOG_INTERVAL = 30.0


class BroadcastProgress:
    """Receives row results and HTTP-core events; draws them for people."""

    def __init__(self, total: int, *, quiet: bool = False, log_every: int = 100,
                 tty: bool | None = None, schedule: Any = None,
                 clock: Callable[[], float] = time.time):
        self.total = total
        self.quiet = quiet
        self.log_every = max(1, log_every)
        self.tty = console.stderr_is_tty() if tty is None else tty
        self.counts = {"sent": 0, "failed": 0, "unknown": 0}
        self.waiting = False
        self.schedule = schedule
        self.clock = clock
        self.paused_until: float | None = None
        self.started = time.monotonic()
        self._last_log = self.started
        self._lock = threading.Lock()
        self._progress = None
        self._task = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def start(self) -> None:
        if self.quiet or not self.tty:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[sent]} sent[/green] "
                       "[red]{task.fields[failed]} failed[/red] {task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            console=console.err(),
            transient=False,
        )
        self._task = self._progress.add_task("Sending", total=self.total, sent=0, failed=0,
                                             rate="", eta="")
        self._progress.start()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed * 60 if elapsed > 0 else 0.0

    def rate_text(self) -> str:
        if self.schedule is not None:
            return self.schedule.rate_shown()
        return f"{self.rate():.1f}/min"

    def eta(self) -> float | None:
        remaining = self.total - self.done
        if self.schedule is not None:
            left = self.schedule.remaining(self.clock(), remaining)
            return None if left == float("inf") else left
        per_min = self.rate()
        return remaining / per_min * 60 if per_min else None

    def paused(self, until: float | None) -> None:
        """The run waits for its hours or its start time (None: it goes on)."""
        with self._lock:
            news = until != self.paused_until
            self.paused_until = until
            if news and until is not None and not self.quiet and not self.tty and self.schedule:
                console.info(f"[{time.strftime('%H:%M:%S')}] paused until "
                             f"{self.schedule.label(until, self.clock())}")
            self._refresh(force=False)

    def on_row(self, row: int, state: str, info: dict[str, Any]) -> None:
        with self._lock:
            self.counts[state] = self.counts.get(state, 0) + 1
            self.waiting = False
            if state != "sent" and not self.quiet and not self.tty:
                detail = info.get("error") or ""
                console.info(f"row {row}: {state} {detail}".rstrip())
            self._refresh(force=self.done % self.log_every == 0)

    def tick(self) -> None:
        with self._lock:
            self._refresh(force=False)

    def notify(self, event: str, data: dict[str, Any]) -> None:
        # A paced run waits before nearly every request: only a longer wait is news.
        spacing = self.schedule.pacing.spacing if self.schedule is not None else 0.0
        if event == "throttle_wait" and data["seconds"] > max(1.0, spacing + 1.0):
            with self._lock:
                self.waiting = True
                self._refresh(force=False, wait=data["seconds"])
        elif event == "pacing" and not self.quiet:
            from cloudchat_cli.output.notify import pacing_warning

            console.warn(pacing_warning(data["interval"]))

    def _refresh(self, *, force: bool, wait: float | None = None) -> None:
        if self.quiet:
            return
        eta = self.eta()
        if self._progress is not None:
            desc = "Waiting for rate limit" if self.waiting else "Sending"
            if self.paused_until is not None and self.schedule is not None:
                desc = f"Paused until {self.schedule.label(self.paused_until, self.clock())}"
            self._progress.update(
                self._task, completed=self.done, description=desc, sent=self.counts["sent"],
                failed=self.counts["failed"] + self.counts["unknown"],
                rate=self.rate_text(), eta=f"ETA {fmt_duration(eta)}" if eta is not None else "",
            )
            return
        now = time.monotonic()
        if self.paused_until is not None and not force:
            return  # its "paused until …" line says it all; a night's pause logs nothing more
        if force or now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            console.info(
                f"[{time.strftime('%H:%M:%S')}] {self.done}/{self.total}: "
                f"{self.counts['sent']} sent, {self.counts['failed']} failed, "
                f"{self.counts['unknown']} unknown, {self.total - self.done} remaining, "
                f"{self.rate_text()}" + (f", ETA {fmt_duration(eta)}" if eta is not None else "")
                + (f" (waiting {wait:.0f} s for the rate limit)" if wait else "")
            )
