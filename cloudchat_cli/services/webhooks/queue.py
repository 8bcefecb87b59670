"""The forward queue: each saved event's forwarding state, on disk, beside the events.

One SQLite file (``forward.sqlite``) in the directory the events are saved in (``--save DIR``,
or the state dir's outbox without it). The event files stay exactly as the listener wrote
them; the queue only records, per event key, its state — ``pending``, ``delivered`` or
``given_up`` — its attempts, when it is next due and why the last attempt failed. A restarted
listener (even after SIGKILL) reads it back and carries on; ``webhook replay`` marks what it
delivered in the same file.

Backoff and giving up are pure functions of the policy and an injected clock, so they are
tested without waiting.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core.errors import CloudChatError, ExitCode
from cloudchat_cli.core.sqlitedb import LockedDb

FILE_NAME = "forward.sqlite"
SCHEMA_VERSION = 1
PENDING, DELIVERED, GIVEN_UP = "pending", "delivered", "given_up"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'given_up')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS events_waiting ON events (state, received_at, seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ForwardPolicy:
    """When to try again: the first waits as given (CloudChat's 2, 4, 8 s), then doubling up
    to ``max_delay``; an event still not delivered ``give_up_after`` seconds after it was
    received is given up (it stays saved: ``webhook replay`` can send it later)."""

    delays: tuple[float, ...] = (2.0, 4.0, 8.0)
    max_delay: float = 3600.0
    give_up_after: float = 3 * 24 * 3600.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt (1-based)."""
        if failures <= len(self.delays):
            wait = self.delays[failures - 1]
        else:
            last = self.delays[-1] if self.delays else 1.0
            wait = max(last, 1.0) * 2.0 ** min(failures - len(self.delays), 60)
        return min(wait, self.max_delay)


@dataclass
class Waiting:
    """The event at the head of the queue."""

    key: str
    received_at: float
    attempts: int
    next_at: float
    last_error: str | None


def _error(message: str) -> CloudChatError:
    return CloudChatError(message, exit_code=ExitCode.FAILURE,
                          hint="the events themselves are untouched; move the file aside to "
                          "start a new queue")


class ForwardQueue:
    """The forwarding state of the events saved in ``directory``."""

    def __init__(self, directory: Path, *, policy: ForwardPolicy | None = None,
                 clock: Callable[[], float] = time.time):
        self.path = Path(directory) / FILE_NAME
        self.policy = policy or ForwardPolicy()
        self.clock = clock
        self._db = LockedDb(self.path, _SCHEMA, label="forward queue", synchronous="NORMAL",
                            error=_error)
        self._db.tx(self._migrate)
        self._lock = threading.Lock()
        self._counts = self._db.tx(_count, write=False)

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _error(f"{self.path} was written by a newer cloudchat (queue version "
                         f"{version}; this one reads {SCHEMA_VERSION})")
        if version == 0:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('forwarding_since', ?)",
                       (repr(self.clock()),))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # --- what is in it ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many events are pending, delivered, given up (kept in memory: no disk read)."""
        with self._lock:
            return dict(self._counts)

    @property
    def waiting(self) -> int:
        return self.counts()[PENDING]

    def begin_run(self) -> tuple[float, float]:
        """Start a forwarding run; the span of the previous one, ``(start, end)``: the saves
        a crash may have left without their queue row happened within it (``end`` is
        infinite when that run did not stop cleanly)."""
        now = self.clock()

        def swap(db: sqlite3.Connection) -> tuple[float, float]:
            meta = dict(db.execute("SELECT name, value FROM meta"))
            start = float(meta.get("run_started", meta.get("forwarding_since", now)))
            end = float(meta.get("run_stopped", "inf"))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('run_started', ?)", (repr(now),))
            db.execute("DELETE FROM meta WHERE name = 'run_stopped'")
            return start, end if end >= start else float("inf")

        return self._db.tx(swap)

    def end_run(self) -> None:
        """The forwarding run stopped cleanly: every save it made has its row."""
        self._db.tx(lambda db: db.execute("INSERT OR REPLACE INTO meta VALUES ('run_stopped', ?)",
                                          (repr(self.clock()),)))

    def states(self) -> dict[str, str]:
        """Every key the queue knows, with its state."""
        rows = self._db.tx(lambda db: db.execute("SELECT key, state FROM events").fetchall(),
                           write=False)
        return dict(rows)

    def head(self) -> Waiting | None:
        """The oldest pending event (arrival order), due or not."""
        row = self._db.tx(lambda db: db.execute(
            "SELECT key, received_at, attempts, next_at, last_error FROM events "
            "WHERE state = 'pending' ORDER BY received_at, seq LIMIT 1").fetchone(), write=False)
        return Waiting(*row) if row else None

    def oldest_waiting(self) -> float | None:
        head = self.head()
        return head.received_at if head else None

    # --- changes ---------------------------------------------------------------------------

    def add(self, events: Iterable[tuple[str, float]]) -> int:
        """Queue saved events (key, received_at) as pending, due now; known keys are kept
        as they are (a re-save of the same event is not a second delivery)."""
        rows = [(key, received_at, received_at) for key, received_at in events]
        if not rows:
            return 0

        def insert(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events (key, received_at, state, next_at) "
                           "VALUES (?, ?, 'pending', ?)", rows)
            return db.total_changes - before

        added = self._db.tx(insert)
        self._bump(PENDING, added)
        return added

    def delivered(self, key: str) -> None:
        self._finish(key, DELIVERED, None)

    def give_up(self, key: str, why: str) -> None:
        self._finish(key, GIVEN_UP, why)

    def mark_delivered(self, keys: Iterable[tuple[str, float]]) -> None:
        """Record deliveries made elsewhere (``webhook replay``), adding unknown keys."""
        now = self.clock()
        for key, received_at in keys:
            def upsert(db: sqlite3.Connection, key=key, received_at=received_at) -> None:
                db.execute("INSERT INTO events (key, received_at, state, next_at, done_at) "
                           "VALUES (?, ?, 'delivered', ?, ?) ON CONFLICT (key) DO UPDATE SET "
                           "state = 'delivered', done_at = excluded.done_at",
                           (key, received_at, now, now))
            self._db.tx(upsert)
        with self._lock:
            self._counts = self._db.tx(_count, write=False)

    def make_due(self) -> int:
        """Every pending event due now (backoff cut short); how many are pending."""
        now = self.clock()
        self._db.tx(lambda db: db.execute(
            "UPDATE events SET next_at = ? WHERE state = 'pending' AND next_at > ?", (now, now)))
        return self.waiting

    def failed(self, head: Waiting, why: str) -> float | None:
        """Record a failed attempt of ``head``: when it is due again, or None if it is now
        given up (older than the policy allows)."""
        now = self.clock()
        attempts = head.attempts + 1
        if now - head.received_at >= self.policy.give_up_after:
            self._finish(head.key, GIVEN_UP, f"{why} (gave up after {attempts} attempt(s) "
                         f"over {_span(now - head.received_at)})", attempts)
            return None
        due = now + self.policy.delay(attempts)
        self._db.tx(lambda db: db.execute(
            "UPDATE events SET attempts = ?, next_at = ?, last_error = ? WHERE key = ? "
            "AND state = 'pending'", (attempts, due, why, head.key)))
        return due

    def _finish(self, key: str, state: str, why: str | None,
                attempts: int | None = None) -> None:
        now = self.clock()

        def update(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT state FROM events WHERE key = ?", (key,)).fetchone()
            db.execute("UPDATE events SET state = ?, done_at = ?, last_error = ?, "
                       "attempts = COALESCE(?, attempts + 1) WHERE key = ?",
                       (state, now, why, attempts, key))
            return row[0] if row else None

        before = self._db.tx(update)
        if before is not None and before != state:
            with self._lock:
                self._counts[before] -= 1
                self._counts[state] += 1

    def _bump(self, state: str, n: int) -> None:
        with self._lock:
            self._counts[state] += n


def _count(db: sqlite3.Connection) -> dict[str, int]:
    counts = {PENDING: 0, DELIVERED: 0, GIVEN_UP: 0}
    counts.update(dict(db.execute("SELECT state, COUNT(*) FROM events GROUP BY state")))
    return counts


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
