"""The opt-out list: recipients of one profile who must not be messaged.

One SQLite file per profile in the state dir (``optout/PROFILE.sqlite3``), schema versioned by
``PRAGMA user_version``. Entries are (channel, recipient) with the recipient normalised as a send
would normalise it, so ``+62 812-3456-7890`` and ``6281234567890`` are one entry. Broadcasts
attach the file and skip listed rows inside SQLite (no list in memory).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import CloudChatError, UsageError
from cloudchat_cli.core.sqlitedb import LockedDb
from cloudchat_cli.services.messages import (
    MATCH_KEY_SQL,
    InvalidMessage,
    match_key,
    normalise_recipient,
    parse_channel,
)

VERSION = 2
# Version 2 added ``match_key``: a recipient matches in any case where the channel ignores case
# (Telegram @usernames); ``recipient`` keeps the form it was added in, for display.
_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    match_key TEXT NOT NULL,
    added_at REAL NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (channel, match_key)
) WITHOUT ROWID;
"""
SCHEMA = _TABLE.format(name="optout")
COLUMNS = ["channel", "to", "added_at", "note"]
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class OptoutError(CloudChatError):
    """The opt-out list cannot be read or written."""


def _error(message: str) -> OptoutError:
    return OptoutError(message, hint="is the disk full or read-only?")


class OptedOut(UsageError):
    """The recipient is on the opt-out list."""


def optout_path(profile: str) -> Path:
    """The list's file for ``profile`` (a name that is not a safe file name is hashed)."""
    name = profile if _SAFE_NAME.fullmatch(profile) and not profile.startswith(".") else (
        "p-" + hashlib.sha256(profile.encode()).hexdigest()[:16])
    return paths.state_dir() / "optout" / f"{name}.sqlite3"


@dataclass(frozen=True)
class Entry:
    channel: str
    recipient: str
    added_at: float
    note: str


def _set_version(db: LockedDb) -> None:
    """Stamp a new file with ``VERSION``, migrating an older one (read first: a `send` must not
    pay for a write)."""
    current = db.tx(lambda c: c.execute("PRAGMA user_version").fetchone()[0], write=False)
    if current < VERSION:
        db.tx(_migrate)


def _migrate(db) -> None:
    columns = {r[1] for r in db.execute("PRAGMA table_info(optout)")}
    if "match_key" not in columns:  # version 1: rebuild keyed on match_key, oldest entry wins
        db.execute("DROP TABLE IF EXISTS optout_v2")
        db.execute(_TABLE.format(name="optout_v2"))
        db.execute(
            "INSERT OR IGNORE INTO optout_v2 (channel, recipient, match_key, added_at, note) "
            f"SELECT channel, recipient, {MATCH_KEY_SQL.format(t='')}, added_at, note FROM "
            "optout ORDER BY added_at, recipient")
        db.execute("DROP TABLE optout")
        db.execute("ALTER TABLE optout_v2 RENAME TO optout")
    db.execute(f"PRAGMA user_version = {VERSION}")


class OptoutList:
    """One profile's opt-out list."""

    def __init__(self, profile: str, default_country_code: str = ""):
        self.profile = profile
        self.path = optout_path(profile)
        self.country = default_country_code
        self._db = LockedDb(self.path, SCHEMA, label="opt-out list", synchronous="FULL",
                            error=_error)
        _set_version(self._db)

    def close(self) -> None:
        self._db.close()

    def normalise(self, channel: str, recipient: str) -> tuple[str, str]:
        """(canonical channel, normalised recipient), or ``InvalidMessage``."""
        ch = parse_channel(channel)
        return ch, normalise_recipient(ch, recipient, self.country)

    def add(self, channel: str, recipient: str, note: str = "", *,
            now: Callable[[], float] = time.time) -> tuple[str, str, bool]:
        """Add one entry; (channel, recipient, True if it was new)."""
        ch, to = self.normalise(channel, recipient)
        new = self._db.tx(lambda db: db.execute(
            "INSERT OR IGNORE INTO optout (channel, recipient, match_key, added_at, note) "
            "VALUES (?,?,?,?,?)", (ch, to, match_key(ch, to), now(), note)).rowcount) == 1
        return ch, to, new

    def remove(self, channel: str, recipient: str) -> tuple[str, str, bool]:
        ch, to = self.normalise(channel, recipient)
        gone = self._db.tx(lambda db: db.execute(
            "DELETE FROM optout WHERE channel = ? AND match_key = ?",
            (ch, match_key(ch, to))).rowcount) == 1
        return ch, to, gone

    def find(self, channel: str, recipient: str) -> Entry | None:
        """The entry for an already normalised (channel, recipient), or None."""
        row = self._db.tx(lambda db: db.execute(
            "SELECT channel, recipient, added_at, note FROM optout WHERE channel = ? AND "
            "match_key = ?", (channel, match_key(channel, recipient))).fetchone(), write=False)
        return Entry(*row) if row else None

    def entries(self, batch: int = 1000) -> Iterator[Entry]:
        """Every entry, ordered, read in batches."""
        after: tuple[str, str] = ("", "")
        while True:
            rows = self._db.tx(lambda db, after=after: db.execute(
                "SELECT channel, recipient, added_at, note, match_key FROM optout WHERE "
                "(channel, match_key) > (?, ?) ORDER BY channel, match_key LIMIT ?",
                (*after, batch)).fetchall(), write=False)
            if not rows:
                return
            yield from (Entry(*r[:4]) for r in rows)
            after = (rows[-1][0], rows[-1][4])

    def count(self) -> int:
        return self._db.tx(lambda db: db.execute("SELECT COUNT(*) FROM optout").fetchone()[0],
                           write=False)

    def import_rows(self, rows: Iterable[tuple[int, str, str, str]], *,
                    now: Callable[[], float] = time.time) -> tuple[int, int]:
        """Add (line, channel, recipient, note) rows in one transaction: all or nothing.

        Returns (added, already listed); an invalid row raises naming its line."""
        checked = []
        for line, channel, recipient, note in rows:
            try:
                checked.append((*self.normalise(channel, recipient), note))
            except InvalidMessage as exc:
                raise UsageError(f"line {line}: {exc.message}", hint=exc.hint) from None

        def run(db):
            stamp = now()
            return sum(db.execute(
                "INSERT OR IGNORE INTO optout (channel, recipient, match_key, added_at, note) "
                "VALUES (?, ?, ?, ?, ?)", (ch, to, match_key(ch, to), stamp, note)).rowcount
                for ch, to, note in checked)

        added = self._db.tx(run)
        return added, len(checked) - added


def read_list_file(path: Path, default_channel: str) -> Iterator[tuple[int, str, str, str]]:
    """(line, channel, recipient, note) from a CSV with a ``to`` column (optional ``channel``,
    ``note``) or from a plain file of one recipient per line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    lines = text.splitlines()
    first = lines[0] if lines else ""
    delimiter = max(",;\t", key=first.count)
    header = [h.strip().lower() for h in first.split(delimiter)] if first.count(delimiter) or \
        first.strip().lower() == "to" else []
    if "to" in header:
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        reader.fieldnames = [h.strip().lower() for h in reader.fieldnames or []]
        for number, row in enumerate(reader, start=2):
            to = _cell(row.get("to"))
            if to:
                yield (number, _cell(row.get("channel")) or default_channel, to,
                       _cell(row.get("note")))
        return
    if header:
        raise UsageError(f"{path}: a CSV needs a 'to' column (or give one recipient per line)")
    for number, line in enumerate(lines, start=1):
        value = _cell(line)
        if value and not value.startswith("#"):
            yield number, default_channel, value, ""


def export_csv(entries: Iterable[Entry], out) -> int:
    """Write entries as CSV, every cell spreadsheet-safe (``-100…`` → ``'-100…``, as in
    broadcast reports); ``import`` removes that one apostrophe again."""
    from cloudchat_cli.services.broadcast.service import safe_cell

    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for e in entries:
        writer.writerow([safe_cell(v) for v in (
            e.channel, e.recipient,
            time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(e.added_at)), e.note)])
        count += 1
    return count


def _cell(value: str | None) -> str:
    """A cell as written, less the one apostrophe a safe export (or a spreadsheet) put first."""
    value = (value or "").strip()
    return value[1:] if value.startswith("'") else value


def check_send(profile: str, payload: dict, default_country_code: str = "") -> None:
    """Refuse (exit 2) a message to a recipient on the profile's opt-out list."""
    if not optout_path(profile).exists():
        return
    lst = OptoutList(profile, default_country_code)
    try:
        entry = lst.find(payload["channel"], payload["to"])
    finally:
        lst.close()
    if entry is not None:
        since = time.strftime("%Y-%m-%d", time.localtime(entry.added_at))
        note = f" ({entry.note})" if entry.note else ""
        raise OptedOut(
            f"{payload['to']} is on the opt-out list for {payload['channel']} since "
            f"{since}{note}; nothing was sent",
            hint="`cloudchat optout remove` takes it off the list; --ignore-optout sends anyway",
        )


# --- inbound keywords (webhook listen --optout-keywords) -------------------------------------


def parse_keywords(value: str) -> list[str]:
    words = [w.strip().casefold() for w in value.split(",") if w.strip()]
    if not words:
        raise UsageError("--optout-keywords needs at least one word, e.g. STOP,BERHENTI")
    return words


def keyword_handler(
    profile: str, keywords: list[str], notice: Callable[[str], None], *,
    default_country_code: str = "", now: Callable[[], float] = time.time,
) -> Callable[[dict], None]:
    """A per-event hook: a ``message.received`` whose whole text (trimmed, any case) is one of
    ``keywords`` puts its sender on the opt-out list, and says so through ``notice``. Raises
    ``CloudChatError`` when the list cannot be written (a sender that is not a valid recipient
    is only a notice: a retry would not change it)."""
    wanted = set(keywords)

    def handle(event: dict) -> None:
        match = inbound_optout(event, wanted)
        if match is None:
            return
        channel, sender, word = match
        try:
            lst = OptoutList(profile, default_country_code)
            try:
                ch, to, new = lst.add(channel, sender, f"replied {word!r} (event "
                                      f"{event.get('id', '?')})", now=now)
            finally:
                lst.close()
        except InvalidMessage as exc:
            notice(f"opt-out: {word!r} from {sender!r} not added: {exc.message}")
            return
        except CloudChatError as exc:  # the STOP must not be acknowledged: the caller's 500
            notice(f"opt-out: could not add {sender!r}: {exc.message}")
            raise
        notice(f"opt-out: added {ch} {to} (replied {word!r})" if new
               else f"opt-out: {ch} {to} replied {word!r} (already on the list)")

    return handle


def inbound_optout(event: dict, keywords: set[str]) -> tuple[str, str, str] | None:
    """(channel, sender, keyword) when ``event`` is an opt-out reply, else None."""
    if not isinstance(event, dict) or event.get("event") != "message.received":
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    text, sender, channel = data.get("text"), data.get("from"), event.get("channel")
    if not isinstance(text, str) or not isinstance(sender, str) or not isinstance(channel, str):
        return None
    word = text.strip().casefold()
    return (channel, sender, text.strip()) if word in keywords else None
