"""Render the HTTP core's events (rate-limit waits, retries, pacing) on stderr for people."""

from __future__ import annotations

from typing import Any

from cloudchat_cli.output import console

WAIT_SHOWN_AFTER = 1.0


def pacing_warning(interval: float) -> str:
    """429s despite a kept window: name the usual cause, which no local setting can see."""
    return (
        "the server keeps answering 429 although this machine keeps to the window: the key is "
        "probably also used elsewhere — another machine, or the App's own backend (the limiter "
        "only knows the cloudchat processes on this machine, or every machine sharing its "
        "rate_store; point several machines at one Redis with rate_store); pacing evenly at "
        f"one request every {interval:.2f} s from now on"
    )


class Notifier:
    """Callable passed to the API client as ``notify``; quiet mode drops everything."""

    def __init__(self, *, quiet: bool = False, limit: int | None = None,
                 window: float | None = None):
        self.quiet = quiet
        self.limit = limit
        self.window = window
        self._pacing_said = False
        self._status = None

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        if event == "throttle_wait" and data["seconds"] > WAIT_SHOWN_AFTER:
            rate = f" ({self.limit} per {self.window:g} s)" if self.limit else ""
            text = f"Waiting about {data['seconds']:.1f} s for a rate-limit slot{rate}…"
            if console.stderr_is_tty():
                self._status = console.err().status(console.escape(text))
                self._status.start()
            else:
                console.info(text)
        elif event == "throttle_done":
            self.stop()
        elif event == "retry":
            console.info(
                f"HTTP {data['status']}; retry {data['retry']}/{data['max_retries']} "
                f"in {data['delay']:.1f} s"
            )
        elif event == "pacing" and not self._pacing_said:
            self._pacing_said = True
            console.warn(pacing_warning(data["interval"]))

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
