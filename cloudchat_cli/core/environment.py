"""The world one invocation runs in: environment variables, streams, terminal, colour, clock.

``Environment.from_process()`` is called once, at the top of the CLI (``app.main``); everything
below reads the environment it is given (``Session.environment``) instead of ``os.environ``,
``sys.std*`` or ``isatty()``. Tests and library users build one by hand::

    Environment(env={"CLOUDCHAT_CONFIG_DIR": "/tmp/c"}, stdout=io.StringIO())

``app.run()`` binds the environment of the invocation for its duration (``bound``), so the few
core helpers whose callers have no session at hand (``core.paths``) follow the invocation's
variables, not the process's. That binding is the only mutable module state; it is restored
when ``run()`` returns, and a process that never binds one gets ``from_process()``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time as _time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TextIO


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no such method, or a closed stream
        return False


def _on(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "") not in ("", "0")


@dataclass(frozen=True)
class Clock:
    """Wall time, monotonic time and sleeping: replaced by a fake in tests."""

    time: Callable[[], float] = _time.time
    monotonic: Callable[[], float] = _time.monotonic
    sleep: Callable[[float], None] = _time.sleep


@dataclass(eq=False)
class Environment:
    """Everything an invocation reads from the process, gathered in one object.

    Any field left out takes a harmless default: an empty environment, empty stdin, output
    thrown away, no terminal. The ``*_isatty`` flags are computed once from the streams unless
    given (a test can pretend to be a terminal while capturing output).
    """

    env: Mapping[str, str] = field(default_factory=dict)
    stdin: TextIO | None = None
    stdout: TextIO | None = None
    stderr: TextIO | None = None
    stdin_isatty: bool | None = None
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    no_color: bool | None = None  # NO_COLOR set (non-empty); ``--no-color`` is per invocation
    debug: bool | None = None  # CLOUDCHAT_DEBUG set; ``--debug`` is per invocation
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        import io

        if self.stdin is None:
            self.stdin = io.StringIO()
        if self.stdout is None:
            self.stdout = io.StringIO()
        if self.stderr is None:
            self.stderr = io.StringIO()
        for name in ("stdin", "stdout", "stderr"):
            if getattr(self, f"{name}_isatty") is None:
                setattr(self, f"{name}_isatty", _isatty(getattr(self, name)))
        if self.no_color is None:
            self.no_color = bool(self.env.get("NO_COLOR"))
        if self.debug is None:
            self.debug = _on(self.env, "CLOUDCHAT_DEBUG")

    @classmethod
    def from_process(cls) -> Environment:
        """The real process: ``os.environ`` and ``sys.stdin/stdout/stderr``."""
        return cls(env=os.environ, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)

    @property
    def columns(self) -> int | None:
        """The terminal width asked for with ``COLUMNS``, if any (rich measures otherwise)."""
        try:
            value = int(self.env.get("COLUMNS", ""))
        except ValueError:
            return None
        return value if value > 0 else None


_bound: list[Environment] = []


def current() -> Environment:
    """The environment of the running invocation (``app.run``), else the process's own."""
    return _bound[-1] if _bound else Environment.from_process()


@contextlib.contextmanager
def bound(environment: Environment) -> Iterator[Environment]:
    """Make ``environment`` the current one until the block ends (nested blocks stack)."""
    depth = len(_bound)
    _bound.append(environment)
    try:
        yield environment
    finally:
        del _bound[depth:]
