"""One SQLite connection shared by threads, with serialised transactions and clear errors.

Used by the throttle's shared window and by broadcast journals. Every call is a short
transaction under a lock (``BEGIN IMMEDIATE`` for writes, so processes queue instead of
failing), rolled back on any exception, and any SQLite failure becomes the caller's own
``CloudChatError`` with a message and hint that name the file.
"""

from __future__ import annotations

import contextlib
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
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(schema)
            path.chmod(0o600)
        except (OSError, sqlite3.Error) as exc:
            raise error(f"cannot open the {label} {path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
