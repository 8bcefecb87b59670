"""The throttle's slots in SQLite, shared by every process on this machine that uses the key.

One database per key in the user state dir, named by a hash of the key (never the key). Each
decision is one ``BEGIN IMMEDIATE`` transaction, so two processes can never both take the last
slot. Slots of a crashed process expire by themselves: an in-flight slot carries the longest it
could need (timeout + window + margin), and one whose process is gone is cut to now + window.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import CloudChatError
from cloudchat_cli.core.migrations import migrate, run_script
from cloudchat_cli.core.sqlitedb import LockedDb
from cloudchat_cli.core.throttle import MAX_PACE, WindowState, decide, key_hash

BUDGETS = """
CREATE TABLE IF NOT EXISTS budget_slots (slot_id INTEGER PRIMARY KEY, owner TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS budget_slots_owner ON budget_slots (owner);
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS slots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    taken REAL NOT NULL,
    expires REAL NOT NULL,
    in_flight INTEGER NOT NULL,
    pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v REAL NOT NULL);
""" + BUDGETS
# budget_slots names the slots a broadcast's budget took (see core/throttle.py, "Budget"). A
# table of its own rather than a new column: an earlier version still running on the same file
# simply never writes to it.

# PRAGMA user_version: MIGRATIONS[i] takes a file from version i to i + 1 (core/migrations.py).
# A file from a newer release is used as it is: releases share one file per key, and every
# change so far leaves what older ones read and write in place.
MIGRATIONS = (
    # v0 → v1: files made before budgets have no budget_slots (files made after them, and
    # before versions, have it and only get their version)
    lambda c: run_script(c, BUDGETS),
)
VERSION = len(MIGRATIONS)
WAL_PAGES = 64


def throttle_path(api_key: str, env: Mapping[str, str] | None = None) -> Path:
    return paths.state_dir(env) / "throttle" / f"{key_hash(api_key)}.sqlite3"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _error(message: str) -> CloudChatError:
    return CloudChatError(
        message,
        hint="make the state directory writable and check free space, or point "
        "CLOUDCHAT_STATE_DIR elsewhere",
    )


class SqliteStore:
    """A ``SlotStore`` in one SQLite file; safe across threads and processes."""

    def __init__(self, path: Path, *, window: float, margin: float):
        self.path = path
        self.where = f"this machine ({path})"
        self.window = window
        self.margin = margin
        self._db = LockedDb(path, SCHEMA, label="rate-limit state", synchronous="NORMAL",
                            error=_error, tighten_dir=True)
        self._tx = self._db.tx
        try:
            # A few KB of live state: checkpoint its log every 64 pages instead of SQLite's
            # 1000, so the -wal file stays near 256 KiB instead of growing to 4 MiB.
            self._db.execute_alone(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
            migrate(self._db, MIGRATIONS)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def _meta(self, db: sqlite3.Connection, key: str) -> float:
        row = db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else 0.0

    def _set_meta(self, db: sqlite3.Connection, key: str, value: float) -> None:
        db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    def _live(self, db: sqlite3.Connection, now: float) -> list[tuple[float, bool]]:
        db.execute("DELETE FROM slots WHERE expires <= ?", (now,))
        db.execute("DELETE FROM budget_slots WHERE slot_id NOT IN (SELECT id FROM slots)")
        rows = db.execute("SELECT id, expires, in_flight, pid FROM slots").fetchall()
        if not rows:
            # Pacing is a process's answer to 429s; once a whole window has passed without a
            # request from anyone, no process is pacing any more (see Throttle.even_pacing).
            db.execute("DELETE FROM meta WHERE k = 'pacing'")
        live = []
        for slot, expires, in_flight, pid in rows:
            if in_flight and not _pid_alive(pid):
                # Its process died mid-request: the request may have arrived up to now.
                expires = min(expires, now + self.window + self.margin)
                db.execute("UPDATE slots SET expires = ?, in_flight = 0 WHERE id = ?",
                           (expires, slot))
                in_flight = 0
            live.append((expires, bool(in_flight)))
        return live

    def _own(self, db: sqlite3.Connection, budget) -> tuple[int, list[tuple[float, bool]], float]:
        """The budget's live slots (after ``_live`` pruned the window) and its paced-until."""
        rows = db.execute(
            "SELECT s.expires, s.in_flight FROM slots s JOIN budget_slots b ON b.slot_id = s.id "
            "WHERE b.owner = ?", (budget.name,)).fetchall()
        sent = db.execute("SELECT v FROM meta WHERE k = ?", ("sent:" + budget.name,)).fetchone()
        return (budget.limit, [(e, bool(f)) for e, f in rows],
                sent[0] + budget.pace if budget.pace and sent else 0.0)

    def try_acquire(self, now, limit, hold_until, pace, settle, budget=None):
        def run(db):
            live = self._live(db, now)
            decision = decide(
                now,
                limit,
                live,
                self._meta(db, "blocked_until"),
                self._meta(db, "last_sent") + pace if pace else 0.0,
                settle,
                self._own(db, budget) if budget is not None else None,
            )
            if decision is not None:
                return None, decision
            cur = db.execute(
                "INSERT INTO slots (taken, expires, in_flight, pid) VALUES (?, ?, 1, ?)",
                (now, hold_until, os.getpid()),
            )
            self._set_meta(db, "last_sent", now)
            if pace:  # still pacing: said by `limits` for as long as its slots are in the window
                self._set_meta(db, "pacing", 1.0)
            if budget is not None:
                db.execute("INSERT INTO budget_slots (slot_id, owner) VALUES (?, ?)",
                           (cur.lastrowid, budget.name))
                self._set_meta(db, "sent:" + budget.name, now)
                # A spacing is at most a day: older last-sends no longer pace anything.
                db.execute("DELETE FROM meta WHERE k LIKE 'sent:%' AND v < ?",
                           (now - MAX_PACE - self.window,))
            return cur.lastrowid, (0.0, 0.0)

        return self._tx(run)

    def mark_sent(self, budget, now):
        def run(db):
            key = "sent:" + budget.name
            self._set_meta(db, key, max(now, self._meta(db, key)))

        self._tx(run)

    def release(self, slot, expires_at, now=None, budget=None):
        self._tx(
            lambda db: db.execute(
                "UPDATE slots SET expires = ?, in_flight = 0 WHERE id = ?", (expires_at, slot)
            )
        )

    def block(self, until, now=None):
        def run(db):
            self._set_meta(db, "blocked_until", max(until, self._meta(db, "blocked_until")))

        self._tx(run)

    def set_pacing(self, on):
        self._tx(lambda db: self._set_meta(db, "pacing", 1.0 if on else 0.0))

    def state(self, now, limit):
        def run(db):
            live = self._live(db, now)
            blocked = self._meta(db, "blocked_until")
            expiries = sorted(e for e, _ in live)
            return WindowState(
                limit=limit,
                used=len(live),
                next_free_at=expiries[len(expiries) - limit] if len(expiries) >= limit else None,
                blocked_until=blocked if blocked > now else 0.0,
                in_flight=sum(1 for _, f in live if f),
                pacing=bool(self._meta(db, "pacing")),
            )

        return self._tx(run)
