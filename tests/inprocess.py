"""Run ``cloudchat`` inside the pytest process: the default for ``run_cli`` and ``cli``.

A subprocess costs ~0.3 s of interpreter start-up and imports per call on the CI machine; an
in-process call costs what the command itself costs. :func:`invoke` is the ONE place that knows
how the app is entered; everything the app reads from the process (environment, streams,
argv, cwd, signal handlers, GC settings) is given to it for the call and restored after, so
each call sees a fresh process. The app itself is entered as the console script enters it,
through ``app.run(argv, environment)`` with an ``Environment`` of pipe-like streams; the
process-wide things are still swapped because libraries read them (platformdirs and keyring
read ``os.environ``, Typer's help writes to ``sys.stdout``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping

# Handlers the app (or a command) may install; each is put back after every call.
_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGUSR1", "SIGUSR2",
                 "SIGALRM", "SIGCHLD", "SIGWINCH")
    if hasattr(signal, name)
)

THREAD_GRACE = 5.0  # seconds a command's threads get to finish after it returns
_COMMAND = "_cloudchat_command"  # set on the threads the command started (directly or not)


def _in_command() -> bool:
    """Is the running code the command's (the calling thread, or a thread it started)?"""
    thread = threading.current_thread()
    return thread is threading.main_thread() or getattr(thread, _COMMAND, False)


@contextlib.contextmanager
def _tag_command_threads() -> Iterator[None]:
    """Threads started by the command are its own; the test's servers (an in-thread sandbox,
    a hostile server) start theirs from their own threads, so theirs are not."""
    start = threading.Thread.start

    def tagged(self: threading.Thread) -> None:
        if _in_command():
            setattr(self, _COMMAND, True)
        start(self)

    threading.Thread.start = tagged
    try:
        yield
    finally:
        threading.Thread.start = start


class _Routed:
    """``sys.stdout``/``sys.stderr`` during a call: the command's own writes are captured;
    the test's threads (servers printing diagnostics) still write where they did, as a
    separate process would keep them apart."""

    def __init__(self, command: io.TextIOWrapper, outside: object):
        self._command, self._outside = command, outside

    def _target(self) -> object:
        return self._command if _in_command() else self._outside

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self._target(), name)


class _Pipe(io.BytesIO):
    """What the command wrote; its stream wrapper may close it (or be collected) first."""

    def close(self) -> None:
        pass


def _stdio(model: io.TextIOWrapper | None, buffer: io.BytesIO, env: Mapping[str, str],
           line_buffering: bool = False) -> io.TextIOWrapper:
    """A text stream like the interpreter would make over a pipe with this environment."""
    # (no stdin at all when pytest itself was started without one: the interpreter's default)
    encoding = getattr(model, "encoding", None) or "utf-8"
    errors = getattr(model, "errors", None) or "strict"
    override = env.get("PYTHONIOENCODING", "")
    if override:
        name, _, handler = override.partition(":")
        encoding, errors = name or encoding, handler or errors
    return io.TextIOWrapper(buffer, encoding=encoding, errors=errors, newline="\n",
                            line_buffering=line_buffering)


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    tz = os.environ.get("TZ")
    os.environ.clear()
    os.environ.update(env)
    if os.environ.get("TZ") != tz:
        time.tzset()
    try:
        yield
    finally:
        changed_tz = os.environ.get("TZ") != tz
        os.environ.clear()
        os.environ.update(saved)
        if changed_tz:
            time.tzset()


def invoke(argv: list[str], env: Mapping[str, str], stdin: bytes = b"",
           cwd: str | os.PathLike | None = None, timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run ``cloudchat *argv`` in this process; return (exit code, stdout bytes, stderr bytes).

    Like a subprocess with pipes: no terminal, stdin at EOF after ``stdin``, output captured as
    bytes. A command that leaves a thread running fails the test (a process would have hung or
    lost its work at exit). After ``timeout`` seconds the command gets a Ctrl-C and
    ``subprocess.TimeoutExpired`` is raised, as ``subprocess.run(timeout=…)`` would.
    """
    from cloudchat_cli import app
    from cloudchat_cli.core.environment import Environment

    if threading.current_thread() is not threading.main_thread():
        raise AssertionError("run_cli runs the command in-process on the main thread (signal "
                             "handlers); for several at once, run_cli(..., process=True)")
    env = dict(env)
    # No terminal: a subprocess with pipes falls back to 80 columns whatever the test runs in.
    env.setdefault("COLUMNS", "80")
    env.setdefault("LINES", "24")
    out, err = _Pipe(), _Pipe()
    streams = (sys.stdin, sys.stdout, sys.stderr)
    handlers = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    gc_threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    argv_before, cwd_before = sys.argv, os.getcwd()
    umask = os.umask(0o022)
    os.umask(umask)
    expired, finished, lock = threading.Event(), threading.Event(), threading.Lock()

    def expire() -> None:  # a real SIGINT (it interrupts a blocking read), as Ctrl-C would be
        with lock:
            if not finished.is_set():
                expired.set()
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    watchdog = threading.Timer(timeout, expire)
    watchdog.start()
    try:
        with _environ(env), _tag_command_threads():
            if cwd is not None:
                os.chdir(cwd)
            sys.stdin = _stdio(sys.__stdin__, io.BytesIO(stdin), env)
            sys.stdout = _Routed(_stdio(sys.__stdout__, out, env), streams[1])
            sys.stderr = _Routed(_stdio(sys.__stderr__, err, env, line_buffering=True),
                                 streams[2])
            sys.argv = ["cloudchat", *argv]  # what a library may still read (the unit's ExecStart)
            # No terminal, as over pipes; everything else the app reads comes from here.
            environment = Environment(env, sys.stdin, sys.stdout, sys.stderr, stdin_isatty=False,
                                      stdout_isatty=False, stderr_isatty=False)
            try:
                code = app.run(list(argv), environment)
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(OSError, ValueError):
                        stream.flush()
    finally:
        with lock:  # no SIGINT once the test's own handlers are back
            finished.set()
        watchdog.cancel()
        sys.stdin, sys.stdout, sys.stderr = streams
        sys.argv = argv_before
        os.chdir(cwd_before)
        os.umask(umask)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        gc.set_threshold(*gc_threshold)
        if gc.get_freeze_count() != frozen:  # steady_gc() froze the heap: a process-wide act
            gc.unfreeze()
    if expired.is_set():
        raise subprocess.TimeoutExpired(["cloudchat", *argv], timeout, out.getvalue(),
                                        err.getvalue())
    _check_threads(argv)
    return code, out.getvalue(), err.getvalue()


def _check_threads(argv: list[str]) -> None:
    """Every thread the command started has ended (a few seconds to finish closing)."""
    left = [t for t in threading.enumerate() if getattr(t, _COMMAND, False)]
    for thread in left:
        thread.join(THREAD_GRACE)
    alive = [t.name for t in left if t.is_alive()]
    if alive:
        raise AssertionError(f"`cloudchat {' '.join(argv)}` left threads running: {alive}")
