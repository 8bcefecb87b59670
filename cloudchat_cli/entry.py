"""The ``cloudchat`` console script: start fast, exit fast.

``cloudchat --version`` is what scripts and bug reports run most; importing Typer and building
the command tree would make it ~1.5x slower than ``import typer`` alone (bench/run), so it is
answered here. Everything else goes to ``app.main()``, the one place errors become exit codes.

Two interpreter costs are cut for every other command (measured in bench/run):

* the cyclic garbage collector runs dozens of times while Typer and httpx import (~7 ms); its
  young-generation threshold is raised for short commands. Long-running ones (``broadcast``,
  ``webhook listen``, ``sandbox``) call ``steady_gc()`` first: the start-up heap is frozen out
  of future collections and the default thresholds come back;
* tearing the interpreter down (freeing ~300 modules) costs ~14 ms after the work is done. When
  the command has finished and no other thread is alive, ``exit_now`` runs the ``atexit``
  handlers, flushes stdout/stderr and ends the process directly. Anything with threads still
  running (``listen``, ``broadcast``, the sandbox) exits the ordinary way.
"""

from __future__ import annotations

import gc
import os
import sys

STARTUP_GC_THRESHOLD = 50_000  # young-generation allocations between collections (default 700)
_DEFAULT_GC_THRESHOLDS = gc.get_threshold()


def version_text() -> str:
    import platform

    from cloudchat_cli import __version__

    return (
        f"cloudchat-cli {__version__} (Python {platform.python_version()}, "
        f"{platform.system()}-{platform.machine()})"
    )


def steady_gc() -> None:
    """Before a long run: default GC thresholds, and the start-up heap never scanned again."""
    gc.freeze()
    gc.set_threshold(*_DEFAULT_GC_THRESHOLDS)


def exit_code(code: object) -> int:
    """The process status ``sys.exit(code)`` would give (a message is printed to stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def exit_now(code: object) -> None:
    """Exit with ``code`` skipping interpreter teardown, unless another thread is still alive."""
    import threading

    status = exit_code(code)
    if threading.active_count() > 1:
        sys.exit(status)
    import atexit
    import contextlib

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to tell it
            stream.flush()
    os._exit(status)


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        sys.stdout.write(version_text() + "\n")
        return
    gc.set_threshold(STARTUP_GC_THRESHOLD)
    from cloudchat_cli.app import main as run

    try:
        run()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)
