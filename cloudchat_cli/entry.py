"""The ``cloudchat`` console script: start fast, exit fast.

``cloudchat --version`` is what scripts and bug reports run most; importing Typer and building
the command tree would make it ~1.5x slower than ``import typer`` alone (bench/run), so it is
answered here. Everything else goes to ``app.main()``, the one place errors become exit codes.

Two interpreter costs are cut for every other command (measured in bench/run):

* the cyclic garbage collector runs dozens of times while Typer and httpx import (~7 ms); its
  young-generation threshold is raised for short commands. Long-running ones (``broadcast``,
  ``webhook listen``, ``sandbox``), marked in ``commands/registry.py``, get ``steady_gc()``
  from the registry before they run: the start-up heap is frozen out of future collections
  and the default thresholds come back;
* tearing the interpreter down (freeing ~300 modules) costs ~14 ms after the work is done. When
  the command has finished, no other thread is alive and no file other than stdin/stdout/stderr
  is open for writing, ``exit_now`` runs the ``atexit`` handlers, flushes stdout/stderr and ends
  the process directly. Anything with threads still running (``listen``, ``broadcast``, the
  sandbox) or a file left open for writing (its buffer is flushed only by the file object's
  finaliser) exits the ordinary way.
"""

from __future__ import annotations

import gc
import os
import sys

from cloudchat_cli.gcpolicy import STARTUP_GC_THRESHOLD, steady_gc  # noqa: F401  (re-export)
from cloudchat_cli.version import version_text


def exit_now(code: object) -> None:
    """Exit with ``code`` skipping interpreter teardown, unless another thread is still alive."""
    import threading

    from cloudchat_cli.core.errors import process_status

    status = process_status(code, sys.stderr)
    if threading.active_count() > 1 or _writable_file_open():
        sys.exit(status)
    import atexit
    import contextlib

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed (`>&-`)
            continue
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to tell it
            stream.flush()
    os._exit(status)


def _fd_dir() -> str:
    return "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"


def _files_open() -> dict[int, tuple[int, int]]:
    """Every open descriptor and the file it refers to (device, inode)."""
    found = {}
    try:
        names = os.listdir(_fd_dir())
    except OSError:
        return found
    for name in names:
        try:
            st = os.fstat(int(name))
        except (OSError, ValueError):  # the listing's own descriptor, closed by now
            continue
        found[int(name)] = (st.st_dev, st.st_ino)
    return found


# What the process was started with (a parent's pipe, a terminal): no Python buffer of ours.
_INHERITED = _files_open()


def _writable_file_open() -> bool:
    """Whether a file beyond stdin/stdout/stderr and what we inherited is open for writing
    (or we cannot tell): the bytes its Python object still buffers would be lost by
    ``os._exit``. Sockets do not count (their clients are closed by the command), nor do
    read-only files."""
    import stat

    try:
        import fcntl

        names = os.listdir(_fd_dir())
    except (ImportError, OSError):  # no fcntl (Windows), no fd directory: take the safe way
        return True
    for name in names:
        fd = int(name)
        if fd <= 2:
            continue
        try:
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                continue
            st = os.fstat(fd)
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if _INHERITED.get(fd) == (st.st_dev, st.st_ino):
            continue
        mode = st.st_mode
        if stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return True
    return False


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
