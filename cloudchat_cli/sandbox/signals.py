"""Stop a foreground sandbox on SIGINT/SIGTERM without raising from a signal handler.

The CLI's default handlers raise ``Interrupted`` wherever the main thread happens to be. A
server spends its life inside library code (socketserver, rich), and an exception raised there
can be swallowed by an ``except Exception`` — leaving a sandbox that ignores SIGTERM until it
is killed. Here the handlers only write the signal's number to a pipe, and the main thread
waits on the pipe: a signal that arrives at any moment, even before the wait, stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any


class StopSignals:
    """``with StopSignals() as stop: …; stop.wait()`` returns the first signal's name."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopSignals:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # a handler must never block
        self._previous: dict[int, Any] = {}
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a stop is pending
            os.write(self._write, bytes([signum]))

    def wait(self) -> str:
        """Block until SIGINT or SIGTERM; return "Ctrl-C" or "SIGTERM"."""
        signum = os.read(self._read, 1)[0]
        return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        os.close(self._read)
        os.close(self._write)
