"""State on disk across releases: journals and throttle files written by earlier versions.

The journals in tests/fixtures/ were written by the releases themselves (make_old_journals.py
says how): an interrupted broadcast with 2 rows sent, row 5 a duplicate of row 3, 3 pending.
"""

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from cloudchat_cli.core import migrations
from cloudchat_cli.core.errors import CloudChatError
from cloudchat_cli.core.sqlitedb import LockedDb
from cloudchat_cli.core.throttle import Budget
from cloudchat_cli.core.throttle_sqlite import VERSION as THROTTLE_VERSION
from cloudchat_cli.core.throttle_sqlite import SqliteStore
from cloudchat_cli.services.broadcast.journal import VERSION as JOURNAL_VERSION

from .conftest import run_cli
from .test_e2e_broadcast import TEMPLATE, bc_env

FIXTURES = Path(__file__).parent / "fixtures"


def _old_fingerprint(options: dict) -> str:
    """BroadcastOptions.fingerprint() as releases v1 and v2 computed it (plan.py)."""
    data = dict(options)
    if data["encoding"] is None:
        del data["encoding"]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _old_journal(tmp_path: Path, version: int) -> tuple[Path, Path, list[str]]:
    """The fixture journal and its CSV, at tmp_path. A journal's options include the CSV's
    absolute path, so the copy is pointed at the CSV's new place with the old release's own
    fingerprint: what that release would have written had the CSV been here."""
    csv_path = tmp_path / "journal-resume.csv"
    shutil.copy(FIXTURES / "journal-resume.csv", csv_path)
    journal = tmp_path / f"journal-v{version}.sqlite3"
    shutil.copy(FIXTURES / f"journal-v{version}-unfinished.sqlite3", journal)
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == version
    meta = dict(db.execute("SELECT k, v FROM meta"))
    pending = [r for (r,) in db.execute("SELECT recipient FROM rows WHERE state = 'pending'")]
    options = json.loads(meta["options_json"])
    assert _old_fingerprint(options) == meta["options"]  # the copy above is that release's
    options["csv_path"] = str(csv_path.resolve())
    db.executemany("UPDATE meta SET v = ? WHERE k = ?",
                   [(json.dumps(options), "options_json"), (_old_fingerprint(options), "options"),
                    (str(csv_path.resolve()), "csv_path")])
    db.commit()
    db.close()
    return journal, csv_path, pending


@pytest.mark.e2e
@pytest.mark.parametrize("version", [1, 2])
def test_a_broadcast_interrupted_by_an_older_release_resumes_after_the_upgrade(
        tmp_path, env, sandbox_factory, version):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    journal, csv_path, pending = _old_journal(tmp_path, version)
    assert len(pending) == 3
    cenv = bc_env(env, box)
    resumed = run_cli("broadcast", str(csv_path), "-t", TEMPLATE, "-y", "--journal",
                      str(journal), "--json", env=cenv)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming: 2 sent, 0 failed, 0 unknown, 3 to send" in resumed.stderr
    counts = json.loads(resumed.stdout)
    assert (counts["sent"], counts["skipped"], counts["pending"]) == (5, 1, 0)
    sent = [r["request"]["to"] for r in box.records() if r["status"] == 201]
    assert sorted(sent) == sorted(pending)  # each once; none of the rows sent before
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == JOURNAL_VERSION
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    again = run_cli("broadcast", str(csv_path), "-t", TEMPLATE, "-y", "--journal",
                    str(journal), env=cenv)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert len(box.records()) == 3


# --- the throttle's file -----------------------------------------------------------------------

# Exact DDL of the releases before budgets (0e11a57^) and before versions (today's file).
BEFORE_BUDGETS = """
CREATE TABLE IF NOT EXISTS slots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    taken REAL NOT NULL,
    expires REAL NOT NULL,
    in_flight INTEGER NOT NULL,
    pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v REAL NOT NULL);
"""
BEFORE_VERSIONS = BEFORE_BUDGETS + """
CREATE TABLE IF NOT EXISTS budget_slots (slot_id INTEGER PRIMARY KEY, owner TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS budget_slots_owner ON budget_slots (owner);
"""
T = 1_800_000_000.0


def _old_throttle_file(path: Path, ddl: str, user_version: int = 0) -> None:
    db = sqlite3.connect(path)
    db.executescript(ddl)
    db.executemany("INSERT INTO slots (taken, expires, in_flight, pid) VALUES (?, ?, 0, 1)",
                   [(T - 5, T + 55), (T - 1, T + 59)])
    db.executemany("INSERT INTO meta (k, v) VALUES (?, ?)",
                   [("blocked_until", T + 30), ("last_sent", T - 1)])
    db.execute(f"PRAGMA user_version = {user_version}")
    db.commit()
    db.close()


@pytest.mark.parametrize("ddl", [BEFORE_BUDGETS, BEFORE_VERSIONS],
                         ids=["before-budgets", "before-versions"])
def test_a_throttle_file_without_a_version_is_migrated_and_keeps_its_window(tmp_path, ddl):
    path = tmp_path / "key.sqlite3"
    _old_throttle_file(path, ddl)
    store = SqliteStore(path, window=60, margin=0)
    state = store.state(T, 3)
    assert (state.used, state.blocked_until, state.next_free_at) == (2, T + 30, None)
    # a budgeted slot (the table the oldest files lack) is taken once the 429 block ends
    assert store.try_acquire(T + 30, 3, T + 95, 0.0, T + 90, Budget("b1", 1))[0] is not None
    assert store.state(T + 30, 3).used == 3
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == THROTTLE_VERSION == 1
    db.close()


def test_a_throttle_file_from_a_newer_release_is_used_as_it_is(tmp_path):
    path = tmp_path / "key.sqlite3"
    _old_throttle_file(path, BEFORE_VERSIONS, user_version=THROTTLE_VERSION + 5)
    store = SqliteStore(path, window=60, margin=0)
    assert store.state(T, 3).used == 2
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == THROTTLE_VERSION + 5
    db.close()


# --- the helper ----------------------------------------------------------------------------------


def _db(path: Path) -> LockedDb:
    return LockedDb(path, "CREATE TABLE IF NOT EXISTS t (a INTEGER);", label="test db",
                    synchronous="NORMAL", error=CloudChatError)


def test_migrations_run_in_order_once_and_a_failing_step_changes_nothing(tmp_path):
    calls = []
    steps = [lambda c: calls.append(1), lambda c: migrations.add_column(c, "t", "b", "TEXT")]
    db = _db(tmp_path / "x.sqlite3")
    assert migrations.migrate(db, steps) == 0
    assert migrations.migrate(db, steps) == 2  # up to date: nothing runs again
    assert calls == [1] and migrations.version_of(db) == 2

    def broken(c):
        c.execute("INSERT INTO t (a, b) VALUES (1, 'x')")
        raise RuntimeError("step 3 failed")

    with pytest.raises(RuntimeError):
        migrations.migrate(db, [*steps, broken])
    assert migrations.version_of(db) == 2  # still 2, and step 3's write rolled back
    assert db.tx(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 0
    db.close()
