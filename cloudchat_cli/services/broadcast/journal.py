"""The broadcast journal: one SQLite file per broadcast, every row's fate committed durably.

A row goes pending → sending → sent / failed / unknown, and each step is committed with
``synchronous=FULL`` before the request goes out and after its answer comes back. So after any
crash the journal knows, for every row, whether it was certainly sent, certainly not sent, or
possibly sent (left in ``sending``: it becomes ``unknown`` and is not resent unless asked).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cloudchat_cli.core.errors import CloudChatError
from cloudchat_cli.core.migrations import add_column, migrate, run_script
from cloudchat_cli.core.sqlitedb import LockedDb
from cloudchat_cli.services.messages import MATCH_KEY_SQL

STATES = ("pending", "sending", "sent", "failed", "unknown", "invalid", "skipped",
          "already_sent", "opted_out", "excluded")
# Rows a run leaves alone on purpose (besides invalid ones and duplicates): received before,
# on the opt-out list, or in --exclude. Never sent, never "pending".
WITHHELD = ("already_sent", "opted_out", "excluded")
# v2: what `broadcast track` learnt from status events (services/broadcast/tracking.py).
# delivery: per row the furthest status (rank 1 sent, 2 delivered, 3 read, 4 failed) and when;
# event_files: the saved-event files already read (name, size, mtime), so a re-run reads only
# new ones; unmatched: status events whose message is not (yet) in this journal, kept to be
# matched later (a `sent` event can arrive before the run records the message id);
# tracking: counters (events read, other event types, files refused).
TRACKING_SCHEMA = """
CREATE INDEX IF NOT EXISTS rows_by_message ON rows (message_id) WHERE message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS delivery (
    row INTEGER PRIMARY KEY,
    rank INTEGER NOT NULL,
    sent_at REAL, delivered_at REAL, read_at REAL, failed_at REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS event_files (
    name TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unmatched (
    message_id TEXT NOT NULL, rank INTEGER NOT NULL, at REAL, error TEXT,
    PRIMARY KEY (message_id, rank)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tracking (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,
    recipient TEXT,
    channel TEXT,
    payload TEXT,
    state TEXT NOT NULL,
    message_id TEXT,
    http_status INTEGER,
    error TEXT,
    updated REAL,
    digest BLOB
);
CREATE INDEX IF NOT EXISTS rows_by_state ON rows (state, row);
CREATE TABLE IF NOT EXISTS seen (hash BLOB PRIMARY KEY, row INTEGER) WITHOUT ROWID;
"""

# PRAGMA user_version: MIGRATIONS[i] takes a journal from version i to i + 1 (core/migrations.py).
# tests/fixtures/journal-v*-unfinished.sqlite3 are journals of earlier versions, resumed by tests.
MIGRATIONS = (
    # v0 → v1: rows.digest (a journal without it had digests computed from payloads)
    lambda c: add_column(c, "rows", "digest", "BLOB"),
    # v1 → v2: delivery tracking
    lambda c: run_script(c, TRACKING_SCHEMA),
    # v2 → v3: seen.row, the row a duplicate duplicates (only a new preflight fills it: a
    # resumed plan keeps its wording)
    lambda c: add_column(c, "seen", "row", "INTEGER"),
)
VERSION = len(MIGRATIONS)


class JournalError(CloudChatError):
    """The journal cannot be read or written (disk full, read-only, corrupt)."""


def _error(message: str) -> JournalError:
    return JournalError(
        message,
        hint="is the disk full or read-only? What was sent so far is recorded; fix the cause "
        "and run the same command again to resume (or pass --journal PATH elsewhere)",
    )


class JournalMoved(CloudChatError):
    """The journal's path no longer names the file this run writes to."""

    def __init__(self, path: Path, how: str):
        super().__init__(
            f"the journal {path} was {how} while this broadcast was running: stopped sending"
        )
        self.path = path
        self.how = how


class _Attached:
    def __init__(self, db: LockedDb, path: Path, alias: str):
        self._db, self._path, self._alias = db, path, alias

    def __enter__(self) -> str:
        self._db.execute_alone("ATTACH DATABASE ? AS " + self._alias, (str(self._path),))
        return self._alias

    def __exit__(self, *exc) -> None:
        self._db.execute_alone("DETACH DATABASE " + self._alias)


class Journal:
    """Thread-safe access to one broadcast's journal."""

    def __init__(self, path: Path):
        self.path = path
        self._db = LockedDb(path, SCHEMA, label="broadcast journal", synchronous="FULL",
                            error=_error)
        self._tx = self._db.tx
        self._lock = None
        migrate(self._db, MIGRATIONS)  # an older journal stays resumable

    def tx(self, fn, *, write: bool = True):
        """Run ``fn(connection)`` as one transaction (delivery tracking's own queries)."""
        return self._tx(fn, write=write)

    def hold(self, lock) -> None:
        """Keep ``lock`` (a ``JournalLock``) until this journal is closed."""
        self._lock = lock

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def discard(self) -> None:
        """Delete the journal's files, then release its lock (no run can slip in between)."""
        self._db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.close()

    def verify_path(self) -> None:
        """Raise ``JournalMoved`` unless the path still names the file this journal has open.

        SQLite keeps writing to a removed or replaced file without a word, and the next run
        would find no record of what this one sent: so a run checks before each send."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise JournalMoved(self.path, "removed") from None
        except OSError as exc:
            raise JournalMoved(self.path, f"made unreachable ({exc.strerror})") from None
        if (st.st_dev, st.st_ino) != self._db.identity():
            raise JournalMoved(self.path, "replaced")

    def save_copy(self, target: Path) -> None:
        """Write this journal's content to a new file ``target`` (which must not exist)."""
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise _error(f"cannot save the journal as {target}: {exc.strerror}") from None
        try:
            self._db.execute_alone("VACUUM INTO ?", (str(target),))
        except JournalError:
            target.unlink(missing_ok=True)
            raise

    # --- meta ------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._tx(lambda db: db.execute("SELECT k, v FROM meta").fetchall(),
                             write=False))

    def set_meta(self, **values: Any) -> None:
        self._tx(
            lambda db: db.executemany(
                "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()],
            )
        )

    # --- preflight -------------------------------------------------------------------------

    def reset_rows(self) -> None:
        def run(db):
            db.execute("DELETE FROM rows")
            db.execute("DELETE FROM seen")
            db.execute("DELETE FROM meta WHERE k = 'preflight_done'")

        self._tx(run)

    def add_rows(self, batch: list[tuple], hashes: list[bytes | None]) -> None:
        """Insert a batch of (row, recipient, channel, payload, state, error) in one commit.

        A row whose hash was already seen is stored as ``skipped`` (a duplicate). Every row
        with a payload keeps its message digest (what history looks up later); a row that was
        not deduplicated (``--allow-duplicates``) gets it computed here."""
        from cloudchat_cli.services.broadcast.history import message_digest

        def run(db):
            now = time.time()
            for item, digest in zip(batch, hashes, strict=True):
                row, recipient, channel, payload, state, error = item
                dup = False
                if digest is not None:
                    dup = db.execute(
                        "INSERT OR IGNORE INTO seen (hash, row) VALUES (?, ?)", (digest, row)
                    ).rowcount == 0
                elif payload is not None:
                    digest = message_digest(json.loads(payload))
                if dup:
                    first = db.execute("SELECT row FROM seen WHERE hash = ?",
                                       (digest,)).fetchone()[0]
                    state, error = "skipped", f"duplicate of row {first}"
                db.execute(
                    "INSERT INTO rows (row, recipient, channel, payload, state, error, updated, "
                    "digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (row, recipient, channel, payload, state, error, now, digest),
                )

        self._tx(run)

    # --- withholding rows: history, opt-outs, --exclude ---------------------------------------

    def attached(self, path: Path, alias: str):
        """Context manager: ``path`` attached to this journal's connection as ``alias``."""
        return _Attached(self._db, path, alias)

    def withhold_sent_before(self, alias: str, *, apply: bool) -> tuple[int, float | None]:
        """Pending rows whose digest is in ``alias.sent``: (count, latest time it was sent).

        With ``apply`` they become ``already_sent``."""
        def run(db):
            count, latest = db.execute(
                f"SELECT COUNT(*), MAX(s.at) FROM rows JOIN {alias}.sent s "
                "ON s.digest = rows.digest WHERE rows.state = 'pending'"
            ).fetchone()
            if apply and count:
                # One text for every row: a date per row costs a localtime() each (2x slower).
                db.execute(
                    "UPDATE rows SET state = 'already_sent', updated = ?, error = 'an earlier "
                    "run already sent this exact message (--again sends it again)' WHERE "
                    f"state = 'pending' AND digest IN (SELECT digest FROM {alias}.sent)",
                    (time.time(),),
                )
            return count, latest

        return self._tx(run, write=apply)

    def withhold_opted_out(self, alias: str) -> int:
        """Pending rows whose (channel, recipient) is in ``alias.optout`` become ``opted_out``
        (matched on ``match_key``: a Telegram @username in any case)."""
        key = MATCH_KEY_SQL.format(t="rows.")
        return self._tx(
            lambda db: db.execute(
                "UPDATE rows SET state = 'opted_out', updated = ?, error = 'on the opt-out "
                f"list since ' || (SELECT date(o.added_at, 'unixepoch', 'localtime') FROM "
                f"{alias}.optout o WHERE o.channel = rows.channel AND o.match_key = {key}) "
                "WHERE state = 'pending' AND EXISTS (SELECT 1 FROM "
                f"{alias}.optout o WHERE o.channel = rows.channel AND o.match_key = {key})",
                (time.time(),),
            ).rowcount
        )

    def withhold_recipients(self, recipients, reason: str) -> int:
        """Pending rows sent to any of ``recipients`` (an iterable of match keys, streamed)
        become ``excluded``."""
        def run(db):
            db.execute("CREATE TEMP TABLE IF NOT EXISTS excl (recipient TEXT PRIMARY KEY) "
                       "WITHOUT ROWID")
            db.execute("DELETE FROM temp.excl")
            db.executemany("INSERT OR IGNORE INTO temp.excl VALUES (?)",
                           ((r,) for r in recipients))
            count = db.execute(
                "UPDATE rows SET state = 'excluded', error = ?, updated = ? WHERE state = "
                f"'pending' AND {MATCH_KEY_SQL.format(t='')} IN "
                "(SELECT recipient FROM temp.excl)",
                (reason, time.time()),
            ).rowcount
            db.execute("DELETE FROM temp.excl")
            return count

        return self._tx(run)

    # --- sending ---------------------------------------------------------------------------

    def recover_crashed(self) -> int:
        """Rows left in ``sending`` by a crash may have been sent: mark them ``unknown``."""
        return self._tx(
            lambda db: db.execute(
                "UPDATE rows SET state = 'unknown', error = 'the run stopped while this row "
                "was being sent; it may have been delivered', updated = ? "
                "WHERE state = 'sending'",
                (time.time(),),
            ).rowcount
        )

    def requeue(self, states: list[str]) -> int:
        if not states:
            return 0
        marks = ",".join("?" for _ in states)
        return self._tx(
            lambda db: db.execute(
                f"UPDATE rows SET state = 'pending', error = NULL, http_status = NULL "
                f"WHERE state IN ({marks})",
                states,
            ).rowcount
        )

    def pending(self, after: int, limit: int = 200) -> list[tuple[int, dict]]:
        rows = self._tx(
            lambda db: db.execute(
                "SELECT row, payload FROM rows WHERE state = 'pending' AND row > ? "
                "ORDER BY row LIMIT ?",
                (after, limit),
            ).fetchall(),
            write=False,
        )
        return [(row, json.loads(payload)) for row, payload in rows]

    def mark(
        self,
        row: int,
        state: str,
        *,
        message_id: str | None = None,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        self._tx(
            lambda db: db.execute(
                "UPDATE rows SET state = ?, message_id = ?, http_status = ?, error = ?, "
                "updated = ? WHERE row = ?",
                (state, message_id, http_status, error, time.time(), row),
            )
        )

    # --- reading back ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        rows = self._tx(
            lambda db: db.execute("SELECT state, COUNT(*) FROM rows GROUP BY state").fetchall(),
            write=False,
        )
        counts = dict.fromkeys(STATES, 0)
        counts.update(dict(rows))
        return counts

    def channel_counts(self) -> dict[str, int]:
        rows = self._tx(
            lambda db: db.execute(
                "SELECT channel, COUNT(*) FROM rows WHERE state NOT IN ('invalid', 'skipped') "
                "GROUP BY channel ORDER BY channel"
            ).fetchall(),
            write=False,
        )
        return dict(rows)

    def errors(self, states: tuple[str, ...], limit: int) -> list[tuple[int, str]]:
        marks = ",".join("?" for _ in states)
        return self._tx(
            lambda db: db.execute(
                f"SELECT row, error FROM rows WHERE state IN ({marks}) ORDER BY row LIMIT ?",
                (*states, limit),
            ).fetchall(),
            write=False,
        )

    def preview(self, limit: int) -> list[tuple[int, dict]]:
        rows = self._tx(
            lambda db: db.execute(
                "SELECT row, payload FROM rows WHERE state = 'pending' ORDER BY row LIMIT ?",
                (limit,),
            ).fetchall(),
            write=False,
        )
        return [(row, json.loads(payload)) for row, payload in rows]

    def report_rows(self, batch: int = 1000) -> Iterator[tuple]:
        """Every row in order, in batches (flat memory for a million rows)."""
        after = 0
        while True:
            rows = self._tx(
                lambda db, after=after: db.execute(
                    "SELECT row, recipient, channel, state, message_id, http_status, error "
                    "FROM rows WHERE row > ? ORDER BY row LIMIT ?",
                    (after, batch),
                ).fetchall(),
                write=False,
            )
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    def last_sent_at(self) -> float | None:
        return self._tx(lambda db: db.execute(
            "SELECT MAX(updated) FROM rows WHERE state = 'sent'").fetchone()[0], write=False)

    def check(self) -> str:
        """SQLite's own integrity check: 'ok' for a sound journal."""
        return self._tx(lambda db: db.execute("PRAGMA integrity_check").fetchone()[0],
                        write=False)
