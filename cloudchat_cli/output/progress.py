"""Broadcast progress on stderr: a rich bar on a TTY, a log line every N rows or 30 s otherwise."""

from __future__ import annotations

import threading
import time
from typing import Any

from cloudchat_cli.output import console

LOG_INTERVAL = 30.0


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class BroadcastProgress:
    """Receives row results and HTTP-core events; draws them for people."""

    def __init__(self, total: int, *, quiet: bool = False, log_every: int = 100,
                 tty: bool | None = None):
        self.total = total
        self.quiet = quiet
        self.log_every = max(1, log_every)
        self.tty = console.stderr_is_tty() if tty is None else tty
        self.counts = {"sent": 0, "failed": 0, "unknown": 0}
        self.waiting = False
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
            TimeRemainingColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[sent]} sent[/green] "
                       "[red]{task.fields[failed]} failed[/red] {task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console.err(),
            transient=False,
        )
        self._task = self._progress.add_task("Sending", total=self.total, sent=0, failed=0,
                                             rate="")
        self._progress.start()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed * 60 if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        per_min = self.rate()
        return (self.total - self.done) / per_min * 60 if per_min else None

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
        if event == "throttle_wait" and data["seconds"] > 1:
            with self._lock:
                self.waiting = True
                self._refresh(force=False, wait=data["seconds"])
        elif event == "pacing" and not self.quiet:
            from cloudchat_cli.output.notify import pacing_warning

            console.warn(pacing_warning(data["interval"]))

    def _refresh(self, *, force: bool, wait: float | None = None) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            desc = "Waiting for rate limit" if self.waiting else "Sending"
            self._progress.update(
                self._task, completed=self.done, description=desc, sent=self.counts["sent"],
                failed=self.counts["failed"] + self.counts["unknown"],
                rate=f"{self.rate():.1f}/min",
            )
            return
        now = time.monotonic()
        if force or now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            eta = self.eta()
            console.info(
                f"[{time.strftime('%H:%M:%S')}] {self.done}/{self.total}: "
                f"{self.counts['sent']} sent, {self.counts['failed']} failed, "
                f"{self.counts['unknown']} unknown, {self.total - self.done} remaining, "
                f"{self.rate():.1f}/min" + (f", ETA {fmt_duration(eta)}" if eta else "")
                + (f" (waiting {wait:.0f} s for the rate limit)" if wait else "")
            )
