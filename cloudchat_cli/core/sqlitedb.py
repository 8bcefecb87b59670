"""One SQLite connection shared by threads, with serialised transactions and clear errors.

Used by the throttle's shared window and by broadcast journals. Every call is a short
transaction under a lock (``BEGIN IMMEDIATE`` for writes, so processes queue instead of
failing), rolled back on any exception, and any SQLite failure becomes the caller's own
``CloudChatError`` with a message and hint that name the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import CloudChatError

T = TypeVar("T")


class LockedDb:
    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        label: str,
        synchronous: str,
        error: Callable[[str], CloudChatError],
        tighten_dir: bool = False,
    ):
        self.path = path
        self.label = label
        self._error = error
        self._lock = threading.Lock()
        try:
            paths.ensure_private_dir(path.parent, tighten=tighten_dir)
            _create_private(path)
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(schema)
            st = path.stat()
            self._identity = (st.st_dev, st.st_ino)
            for suffix in ("", "-wal", "-shm"):  # SQLite gives these the file's mode
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").chmod(0o600)
        except (OSError, sqlite3.Error) as exc:
            raise error(f"cannot open the {label} {path}: {exc}") from None

    def identity(self) -> tuple[int, int]:
        """(device, inode) of the file this connection has open (taken right after opening)."""
        return self._identity

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def execute_alone(self, sql: str, params: tuple = ()) -> None:
        """Run one statement outside any transaction (``VACUUM INTO`` must)."""
        with self._lock:
            try:
                self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise self._error(f"the {self.label} {self.path} failed: {exc}") from None

    def tx(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise self._error(f"the {self.label} {self.path} failed: {exc}") from None


def _create_private(path: Path) -> None:
    """Create the file 0600 before SQLite does, so its -wal and -shm are born 0600 too."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return  # never open+close an existing database: that would drop SQLite's locks on it
    os.close(fd)
