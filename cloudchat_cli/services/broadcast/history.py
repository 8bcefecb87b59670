"""A broadcast's history: the digest of every (channel, recipient, message) its runs have sent.

One SQLite file per broadcast (CSV path, profile, API) with ``sent(digest PRIMARY KEY, at)``:
looking a row up is one B-tree probe, done for a whole CSV by one ``UPDATE … IN (SELECT …)``
inside SQLite, so a million rows take seconds and no Python memory. The file is a cache of what
the broadcast's journals hold (the current one and every archived one, listed in ``sources``):
each run brings it up to date from them, so an archived journal keeps protecting recipients and
a lost history file is rebuilt from the journals still on disk.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import CloudChatError
from cloudchat_cli.core.sqlitedb import LockedDb

VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (digest BLOB PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sources (path TEXT PRIMARY KEY, final INTEGER NOT NULL DEFAULT 0,
                                    ingested REAL);
"""
# Journals renamed aside never change again: read once. ``saved-``: rescued by a run whose
# journal was removed under it.
FINAL = re.compile(r"\.(done|saved)-\d+\.sqlite3$")


class HistoryError(CloudChatError):
    """The broadcast's history (or a journal it reads) cannot be read or written."""


def _error(message: str) -> HistoryError:
    return HistoryError(
        message,
        hint="nothing was sent; is the disk full or the file damaged? Move an unreadable "
        "journal out of the way only if you know what it sent",
    )


def message_digest(payload: dict) -> bytes:
    """16 bytes naming a message: its channel, recipient, type, text and media."""
    key = {k: v for k, v in payload.items() if k in ("channel", "to", "text", "media", "type")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()[:16]


def _sql_digest(payload: str | None) -> bytes | None:
    """``message_digest`` for SQL: journals made before rows kept their digest."""
    try:
        data = json.loads(payload) if payload else None
    except ValueError:
        return None
    return message_digest(data) if isinstance(data, dict) else None


def history_dir() -> Path:
    return paths.state_dir() / "broadcasts" / "history"


def history_path(key: str) -> Path:
    return history_dir() / f"{key}.sqlite3"


class History:
    """The history file of one broadcast (``key``: its default journal's name)."""

    def __init__(self, key: str, journals_dir: Path):
        self.key = key
        self.path = history_path(key)
        self._journals_dir = journals_dir
        self._db = LockedDb(self.path, SCHEMA, label="broadcast history", synchronous="NORMAL",
                            error=_error)
        self._db.tx(lambda db: db.create_function("message_digest", 1, _sql_digest,
                                                  deterministic=True), write=False)
        if self._db.tx(lambda db: db.execute("PRAGMA user_version").fetchone()[0],
                       write=False) < VERSION:
            self._db.tx(lambda db: db.execute(f"PRAGMA user_version = {VERSION}"))

    def close(self) -> None:
        self._db.close()

    def register(self, journal: Path) -> None:
        """Remember ``journal`` as one of this broadcast's (an explicit ``--journal`` too)."""
        self._db.tx(lambda db: db.execute(
            "INSERT OR IGNORE INTO sources (path, final) VALUES (?, ?)",
            (str(journal.resolve()), int(bool(FINAL.search(journal.name))))))

    def ingest(self, journal: Path) -> int:
        """Add ``journal``'s sent rows (keeping each message's latest time); the row count."""
        final = int(bool(FINAL.search(journal.name)))
        if not journal.is_file():  # ATTACH would create an empty database there
            return 0
        try:
            self._db.execute_alone("ATTACH DATABASE ? AS j", (str(journal),))
        except HistoryError as exc:
            raise _error(f"cannot read the journal {journal} for this broadcast's history: "
                         f"{exc.message}") from None
        try:
            def run(db):
                columns = {r[1] for r in db.execute("PRAGMA j.table_info(rows)")}
                if not columns:
                    return 0
                digest = ("COALESCE(digest, message_digest(payload))" if "digest" in columns
                          else "message_digest(payload)")
                count = db.execute(
                    "INSERT INTO sent (digest, at) SELECT d, at FROM (SELECT "
                    f"{digest} AS d, updated AS at FROM j.rows WHERE state = 'sent') "
                    "WHERE d IS NOT NULL "
                    "ON CONFLICT (digest) DO UPDATE SET at = MAX(at, excluded.at)"
                ).rowcount
                db.execute(
                    "INSERT INTO sources (path, final, ingested) VALUES (?, ?, ?) "
                    "ON CONFLICT (path) DO UPDATE SET final = excluded.final, "
                    "ingested = excluded.ingested",
                    (str(journal.resolve()), final, time.time()))
                return count

            return self._db.tx(run)
        finally:
            self._db.execute_alone("DETACH DATABASE j")

    def sync(self, *, current: Path | None = None) -> None:
        """Read every journal of this broadcast not yet read (archived ones once) except
        ``current`` (the one about to run)."""
        skip = str(current.resolve()) if current is not None else None
        known = dict(self._db.tx(
            lambda db: db.execute("SELECT path, final AND ingested IS NOT NULL FROM sources")
            .fetchall(), write=False))
        found = {str(p.resolve()) for p in self._journals_dir.glob(f"{self.key}.*.sqlite3")
                 if FINAL.search(p.name)}
        default = self._journals_dir / f"{self.key}.sqlite3"  # made before history existed
        if default.is_file():
            found.add(str(default.resolve()))
        for path in sorted(set(known) | found):
            if path == skip or known.get(path):
                continue
            if Path(path).is_file():
                self.ingest(Path(path))

    def sources(self) -> list[Path]:
        rows = self._db.tx(lambda db: db.execute("SELECT path FROM sources").fetchall(),
                           write=False)
        return [Path(r[0]) for r in rows]


def sources_in(history: Path) -> list[Path]:
    """The journals one history file knows of, read only; none if it cannot be read (the
    default and archived journals are found without it)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{history}?mode=ro", uri=True)
        try:
            return [Path(r[0]) for r in db.execute("SELECT path FROM sources")]
        finally:
            db.close()
    except sqlite3.Error:
        return []


def all_sources() -> list[Path]:
    """Every journal any broadcast's history knows of (explicit ``--journal`` ones too)."""
    folder = history_dir()
    if not folder.is_dir():
        return []
    return [source for path in sorted(folder.glob("*.sqlite3")) for source in sources_in(path)]
