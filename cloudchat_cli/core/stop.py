"""One stop model for long-running work: the first Ctrl-C/SIGTERM finishes, the second stops now.

While a ``GracefulStop`` is active its handlers replace the CLI's (which raise ``Interrupted``
wherever the main thread is). A handler never raises: it sets an event and calls back, so no
library code is cut in the middle of a journal write or a lock. The work polls or waits on
the events:

- ``requested`` (first signal, or ``request()`` from code): start nothing new, let what is in
  flight finish, save state, end with exit 130 (``webhook listen``: a normal stop, exit 0).
- ``now`` (second signal): stop without waiting for what is in flight. Each user says what
  that leaves behind (broadcast: the rows in flight become ``unknown``; listen: the forwards
  and ``--exec`` commands not run yet stay on disk / are skipped), and prints exactly that.

Waits inside the work use ``sleep()``: it returns at once when a stop is requested, raising
``Stopped`` so the caller knows the wait was cut short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """A wait was cut short because a stop was requested (raised by ``GracefulStop.sleep``)."""


def signal_name(signum: int) -> str:
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


class GracefulStop:
    """``with GracefulStop(on_first=…, on_second=…) as stop: …``.

    ``on_first(name)`` / ``on_second(name)`` run in the signal handler (the main thread, between
    two bytecodes): keep them short (print one line, wake a loop). Outside the main thread
    nothing is installed: ``request()`` and ``request_now()`` still work.
    """

    def __init__(self, *, on_first: Callable[[str], None] | None = None,
                 on_second: Callable[[str], None] | None = None):
        self.requested = threading.Event()
        self.now = threading.Event()
        self.signal: str | None = None  # "Ctrl-C" or "SIGTERM" once a signal arrived
        self._on_first = on_first or (lambda name: None)
        self._on_second = on_second or (lambda name: None)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        name = signal_name(signum)
        if not self.requested.is_set():
            self.signal = name
            self.requested.set()
            self._on_first(name)
        elif not self.now.is_set():
            self.signal = self.signal or name
            self.now.set()
            self._on_second(name)
        # A third signal changes nothing: the work is already stopping without waiting.

    def request(self) -> None:
        """Ask the work to stop (from code: a fatal error, a test); no callback runs."""
        self.requested.set()

    def request_now(self) -> None:
        self.requested.set()
        self.now.set()

    @property
    def interrupted(self) -> bool:
        """Whether a signal (not code) asked for the stop."""
        return self.signal is not None

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or raise ``Stopped`` as soon as a stop is requested."""
        if self.requested.wait(max(0.0, seconds)):
            raise Stopped()

    def wait_now(self, timeout: float | None = None) -> bool:
        """Wait until a second signal (or ``request_now``); whether it came."""
        return self.now.wait(timeout)
