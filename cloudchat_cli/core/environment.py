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
from typing import Generic, TextIO, TypeVar

T = TypeVar("T")


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no such method, or a closed stream
        return False


def _on(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "") not in ("", "0")


class Clock:
    """Wall time, monotonic time and sleeping: replaced by a fake in tests."""

    __slots__ = ("time", "monotonic", "sleep")

    def __init__(self, time: Callable[[], float] = _time.time,
                 monotonic: Callable[[], float] = _time.monotonic,
                 sleep: Callable[[float], None] = _time.sleep) -> None:
        self.time = time
        self.monotonic = monotonic
        self.sleep = sleep


class Environment:
    """Everything an invocation reads from the process, gathered in one object.

    Any field left out takes a harmless default: an empty environment, empty stdin, output
    thrown away, no terminal. The ``*_isatty`` flags are computed once from the streams unless
    given (a test can pretend to be a terminal while capturing output). ``no_color`` and
    ``debug`` default to ``NO_COLOR`` and ``CLOUDCHAT_DEBUG``; the ``--no-color`` and
    ``--debug`` flags belong to one invocation and never change this object.

    (A plain class rather than a dataclass: generating the two dataclasses took ~0.5 ms at
    import, on every start-up.)
    """

    __slots__ = ("env", "stdin", "stdout", "stderr", "stdin_isatty", "stdout_isatty",
                 "stderr_isatty", "no_color", "debug", "clock", "__weakref__")

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        *,
        stdin_isatty: bool | None = None,
        stdout_isatty: bool | None = None,
        stderr_isatty: bool | None = None,
        no_color: bool | None = None,
        debug: bool | None = None,
        clock: Clock | None = None,
    ) -> None:
        if stdin is None or stdout is None or stderr is None:
            # None also when the process was started with that descriptor closed (`<&-`):
            # an empty stdin and writes that go nowhere, with the .buffer commands use.
            import io

            def empty() -> TextIO:
                return io.TextIOWrapper(io.BytesIO(), encoding="utf-8")

            stdin = empty() if stdin is None else stdin
            stdout = empty() if stdout is None else stdout
            stderr = empty() if stderr is None else stderr
        self.env: Mapping[str, str] = {} if env is None else env
        self.stdin: TextIO = stdin
        self.stdout: TextIO = stdout
        self.stderr: TextIO = stderr
        self.stdin_isatty = _isatty(stdin) if stdin_isatty is None else stdin_isatty
        self.stdout_isatty = _isatty(stdout) if stdout_isatty is None else stdout_isatty
        self.stderr_isatty = _isatty(stderr) if stderr_isatty is None else stderr_isatty
        self.no_color = bool(self.env.get("NO_COLOR")) if no_color is None else no_color
        self.debug = _on(self.env, "CLOUDCHAT_DEBUG") if debug is None else debug
        self.clock = Clock() if clock is None else clock

    def __repr__(self) -> str:  # never the variables: they may hold a key
        return (f"Environment(stdin_isatty={self.stdin_isatty}, "
                f"stdout_isatty={self.stdout_isatty}, stderr_isatty={self.stderr_isatty}, "
                f"no_color={self.no_color}, debug={self.debug})")

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


class Scoped(Generic[T]):
    """"The current X" for the duration of a ``with`` block, nested blocks stacking: how
    ``app.run`` binds the invocation's environment (here) and its output (``output/console``)
    without state that outlives the call."""

    __slots__ = ("_stack",)

    def __init__(self) -> None:
        self._stack: list[T] = []

    def top(self) -> T | None:
        return self._stack[-1] if self._stack else None

    @contextlib.contextmanager
    def bound(self, item: T) -> Iterator[T]:
        depth = len(self._stack)
        self._stack.append(item)
        try:
            yield item
        finally:
            del self._stack[depth:]


_bound: Scoped[Environment] = Scoped()


def current() -> Environment:
    """The environment of the running invocation (``app.run``), else the process's own."""
    return _bound.top() or Environment.from_process()


def bound(environment: Environment) -> contextlib.AbstractContextManager[Environment]:
    """Make ``environment`` the current one until the block ends (nested blocks stack)."""
    return _bound.bound(environment)
