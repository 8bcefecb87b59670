"""One broadcast per journal: an exclusive ``flock`` on ``JOURNAL.lock`` for the whole run.

Why a separate file and ``flock``: the kernel drops the lock when the process dies, however it
dies (``kill -9`` leaves nothing stale); ``flock`` belongs to the open file, so it never mixes
with SQLite's own POSIX record locks on the journal (closing any descriptor of a file drops a
process's POSIX locks on it). SQLite's locks are per transaction and would let two runs
interleave; taking SQLite's exclusive locking mode instead would lock out
``broadcast status``. The holder writes its PID into the file so a refused run can name it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

from cloudchat_cli.core.errors import UsageError

# A refused run that finds no live PID in the file caught the holder between taking the lock
# and writing its PID, or a `status` probe (over a file a killed run left behind): that lasts
# microseconds, so look again a few times.
_RETRIES = 50
_RETRY_WAIT = 0.02


class JournalBusy(UsageError):
    """Another process is running a broadcast with this journal."""

    def __init__(self, journal: Path, pid: int | None):
        who = f"another broadcast (PID {pid})" if pid else "another broadcast"
        super().__init__(
            f"{who} is already running with the journal {journal}; nothing was sent",
            hint=f"wait for it to finish; `cloudchat broadcast status {journal}` shows its "
            "progress",
        )
        self.pid = pid


def lock_path(journal: Path) -> Path:
    """``JOURNAL.lock`` beside the real file (a symlinked journal gets the same lock)."""
    real = journal.resolve()
    return real.with_name(real.name + ".lock")


class JournalLock:
    """Held for a broadcast's whole run; ``release()`` (or process death) frees it."""

    def __init__(self, fd: int, path: Path):
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, journal: Path, *, sleep=time.sleep) -> JournalLock:
        """Take the lock at once or raise ``JournalBusy`` naming the holder's PID."""
        path = lock_path(journal)
        pid = None
        for _ in range(_RETRIES):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                pid = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if pid is not None and _alive(pid):
                    raise JournalBusy(journal, pid) from None
                sleep(_RETRY_WAIT)
                continue
            if not _is_current(fd, path):  # the last holder removed it as we opened it
                os.close(fd)
                continue
            os.fchmod(fd, 0o600)
            data = f"{os.getpid()}\n".encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            return cls(fd, path)
        raise JournalBusy(journal, pid)

    def release(self) -> None:
        """Remove the file (if still ours) and drop the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            if _is_current(fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # a lock file left behind is harmless: the next run takes it over
        finally:
            os.close(fd)


def holder(journal: Path) -> int | None:
    """The PID of the run holding ``journal``'s lock, or None when no run is active."""
    try:
        fd = os.open(lock_path(journal), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(fd)  # None only in the microseconds before the holder writes it
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return pid if pid > 0 else None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _is_current(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
