"""Versioned SQLite files: ``PRAGMA user_version`` and an ordered list of migrations.

The pattern of ``llm``'s migrations, with SQLite's own version counter instead of a table:
``migrations[i]`` takes a file from version ``i`` to ``i + 1``, so a file's version is the
number of steps it has been through and the current version is ``len(migrations)``. Steps are
only ever appended: a released step is never edited, since files in the field went through it.

A ``LockedDb`` creates the current schema (``CREATE … IF NOT EXISTS``) before this runs, so a new
file arrives here at version 0 with every table already in place: each step must therefore
also be harmless on the current schema (add a column only if it is missing: ``add_column``).

All pending steps and the new version commit in one ``BEGIN IMMEDIATE`` transaction: two
processes opening an old file at once migrate it once, and a crash mid-way leaves it as it was.
A file already up to date costs one read. A file from a newer release is left untouched (its
version is returned): each caller decides whether it can still use it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from cloudchat_cli.core.sqlitedb import LockedDb

Migration = Callable[[sqlite3.Connection], None]


def version_of(db: LockedDb) -> int:
    return db.tx(lambda c: c.execute("PRAGMA user_version").fetchone()[0], write=False)


def migrate(db: LockedDb, migrations: Sequence[Migration]) -> int:
    """Run the steps ``db`` has not been through; return the version it had when opened."""
    target = len(migrations)
    found = version_of(db)
    if found >= target:
        return found

    def run(c: sqlite3.Connection) -> int:
        version = c.execute("PRAGMA user_version").fetchone()[0]  # again, under the write lock
        for step in migrations[version:]:
            step(c)
        if version < target:
            c.execute(f"PRAGMA user_version = {target:d}")
        return version

    return db.tx(run)


def add_column(c: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """``ALTER TABLE … ADD COLUMN`` unless ``table`` already has ``column``."""
    if column not in {r[1] for r in c.execute(f"PRAGMA table_info({table})")}:
        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def run_script(c: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the current transaction (``executescript`` would
    commit it first)."""
    for statement in script.split(";"):
        if statement.strip():
            c.execute(statement)
