"""After a broadcast: match saved ``message.status`` events to its rows, in its journal.

Events were verified when ``webhook listen --save`` saved them; here they are only read. Each
row keeps the furthest status reached (sent < delivered < read; failed is final) and when
each was first seen, so events read out of order or twice change nothing they should not.
SQLite does the matching: files are read in batches into a temporary table and joined to the
journal's rows by message id, so memory stays flat for any number of rows and events. The
files read are recorded (name, size, mtime) in the same transaction as their effect: a re-run
reads only new files, and an interrupted one loses nothing.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast.journal import Journal
from cloudchat_cli.services.broadcast.report import COLUMNS as REPORT_COLUMNS
from cloudchat_cli.services.broadcast.report import safe_cell
from cloudchat_cli.services.webhooks.store import NotSavedEvent, read_saved

RANKS = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}
NAMES = {rank: name for name, rank in RANKS.items()}
NO_REASON = "(no reason given)"
TRACK_COLUMNS = ["delivery", "sent_at", "delivered_at", "read_at", "failed_at",
                 "delivery_error"]
BATCH = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text from a file or an event, safe to print: control characters (ANSI escapes too) become
    ``?``, runs of whitespace one space."""
    return _CONTROL.sub("?", " ".join(text.split()))

# A row's status is "furthest": the highest rank seen. A time is the first seen for that status.
_APPLY = """
INSERT INTO delivery (row, rank, sent_at, delivered_at, read_at, failed_at, error)
SELECT r.row, MAX(e.rank),
       MIN(CASE WHEN e.rank = 1 THEN e.at END), MIN(CASE WHEN e.rank = 2 THEN e.at END),
       MIN(CASE WHEN e.rank = 3 THEN e.at END), MIN(CASE WHEN e.rank = 4 THEN e.at END),
       MAX(CASE WHEN e.rank = 4 THEN COALESCE(e.error, '{none}') END)
FROM {source} e JOIN rows r ON r.message_id = e.message_id
WHERE true
GROUP BY r.row
ON CONFLICT (row) DO UPDATE SET
    rank = MAX(rank, excluded.rank),
    sent_at = COALESCE(MIN(sent_at, excluded.sent_at), sent_at, excluded.sent_at),
    delivered_at = COALESCE(MIN(delivered_at, excluded.delivered_at), delivered_at,
                            excluded.delivered_at),
    read_at = COALESCE(MIN(read_at, excluded.read_at), read_at, excluded.read_at),
    failed_at = COALESCE(MIN(failed_at, excluded.failed_at), failed_at, excluded.failed_at),
    error = COALESCE(error, excluded.error)
"""
# Status events of messages not (yet) in this journal: kept, and matched again on each run (a
# `sent` event may be saved before the running broadcast records the message id).
_KEEP_UNMATCHED = """
INSERT INTO unmatched (message_id, rank, at, error)
SELECT message_id, rank, MIN(at), MAX(error) FROM temp.ev e
WHERE NOT EXISTS (SELECT 1 FROM rows r WHERE r.message_id = e.message_id)
GROUP BY message_id, rank
ON CONFLICT (message_id, rank) DO UPDATE SET
    at = COALESCE(MIN(at, excluded.at), at, excluded.at), error = COALESCE(error, excluded.error)
"""
_UNSEEN = """
SELECT l.name, l.size, l.mtime_ns FROM temp.listing l
LEFT JOIN event_files f ON f.name = l.name
WHERE (f.name IS NULL OR f.size != l.size OR f.mtime_ns != l.mtime_ns) AND l.name > ?
ORDER BY l.name LIMIT ?
"""


@dataclass
class Scan:
    """What one pass over the events directory found."""

    files: int = 0  # new saved-event files read
    status_events: int = 0
    refused: int = 0  # files that are not saved events (each warned about)
    incomplete: int = 0  # still being written: read next time


@dataclass
class _Parsed:
    events: list[tuple] = field(default_factory=list)  # (message_id, rank, at, error)
    other: int = 0
    refused: int = 0
    files: list[tuple] = field(default_factory=list)  # (name, size, mtime_ns)


def open_journal(path: Path) -> Journal:
    """Open an existing broadcast journal for tracking; refuse any other file untouched."""
    import sqlite3

    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                "('rows', 'meta')")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise UsageError(f"{path} is not a broadcast journal ({exc})") from None
    if tables != {"rows", "meta"}:
        raise UsageError(f"{path} is not a broadcast journal")
    return Journal(Path(path))


def status_of(body: bytes) -> tuple[str, int, float | None, str | None] | None:
    """(message_id, rank, timestamp, error) of a ``message.status`` event body; None for any
    other event; ``NotSavedEvent`` for a status event without a usable message id or status."""
    try:
        event = json.loads(body)
    except ValueError:
        raise NotSavedEvent("its body is not a JSON event") from None
    if not isinstance(event, dict):
        raise NotSavedEvent("its body is not a JSON event")
    if event.get("event") != "message.status":
        return None
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    message_id, status = data.get("message_id"), data.get("status")
    if not isinstance(message_id, str) or not message_id:
        raise NotSavedEvent("a message.status event without data.message_id")
    if status not in RANKS:
        raise NotSavedEvent(f"a message.status event with an unknown status {status!r}"[:200])
    ts = event.get("timestamp")
    at = float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None
    if at is not None and not (0 < at < 1e11):  # seconds; NaN fails too
        at = None
    error = data.get("error")
    error = printable(error)[:500] if isinstance(error, str) and error.strip() else None
    return message_id, RANKS[status], at, error


def _listing(directory: Path) -> Iterator[tuple[str, int, int]]:
    """(name, size, mtime_ns) of each candidate file: ``*.json``, not hidden, regular."""
    try:
        entries = os.scandir(directory)
    except OSError as exc:
        raise UsageError(f"cannot read the events directory {directory}: "
                         f"{exc.strerror}") from None
    with entries:
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed while listing
            yield entry.name, st.st_size, st.st_mtime_ns


class Tracker:
    """Delivery tracking of one broadcast, stored in its journal."""

    def __init__(self, journal: Journal, *, warn: Callable[[str], None] = lambda m: None,
                 now: Callable[[], float] = time.time):
        self.journal = journal
        self.warn = warn
        self.now = now
        self._tx = journal.tx

    # --- reading events --------------------------------------------------------------------

    def scan(self, directory: Path, *, batch: int = BATCH) -> Scan:
        """Read the files not read before; record their effect and the files, batch by batch."""
        directory = Path(directory)
        if not directory.is_dir():
            raise UsageError(f"no events directory {directory}",
                             hint="the directory given to `cloudchat webhook listen --save`")
        self._tx(self._rematch)
        self._tx(lambda db: (
            db.execute("CREATE TEMP TABLE IF NOT EXISTS listing (name TEXT PRIMARY KEY, "
                       "size INTEGER, mtime_ns INTEGER) WITHOUT ROWID"),
            db.execute("DELETE FROM temp.listing")))
        chunk: list[tuple] = []
        for item in _listing(directory):
            chunk.append(item)
            if len(chunk) >= 5000:
                self._tx(lambda db, c=chunk: db.executemany(
                    "INSERT OR REPLACE INTO temp.listing VALUES (?, ?, ?)", c))
                chunk = []
        if chunk:
            self._tx(lambda db: db.executemany(
                "INSERT OR REPLACE INTO temp.listing VALUES (?, ?, ?)", chunk))
        scan, after = Scan(), ""
        while True:
            page = self._tx(lambda db, a=after: db.execute(_UNSEEN, (a, batch)).fetchall(),
                            write=False)
            if not page:
                break
            after = page[-1][0]
            self._tx(lambda db, p=self._read(directory, page, scan): self._record(db, p))
        self._tx(lambda db: db.execute("DELETE FROM temp.listing"))
        return scan

    def _read(self, directory: Path, page: list[tuple], scan: Scan) -> _Parsed:
        parsed = _Parsed()
        for name, size, mtime_ns in page:
            path = directory / name
            try:
                saved = read_saved(path)
                if saved is None:
                    scan.incomplete += 1
                    continue
                found = status_of(saved.body)
            except NotSavedEvent as exc:
                self.warn(f"{printable(str(path))}: skipped, {exc}")
                scan.refused += 1
                parsed.refused += 1
                parsed.files.append((name, size, mtime_ns))  # not again unless it changes
                continue
            except OSError as exc:
                if not isinstance(exc, FileNotFoundError):
                    self.warn(f"{printable(str(path))}: skipped, cannot read it "
                              f"({exc.strerror})")
                    scan.refused += 1
                continue
            parsed.files.append((name, size, mtime_ns))
            scan.files += 1
            if found is None:
                parsed.other += 1
                continue
            message_id, rank, at, error = found
            if at is None:
                received = saved.meta.get("received_at")
                ok = isinstance(received, int | float) and 0 < received < 1e11
                at = float(received) if ok else mtime_ns / 1e9
            parsed.events.append((message_id, rank, at, error))
            scan.status_events += 1
        return parsed

    def _record(self, db, parsed: _Parsed) -> None:
        db.execute("CREATE TEMP TABLE IF NOT EXISTS ev (message_id TEXT, rank INTEGER, at REAL, "
                   "error TEXT)")
        db.execute("DELETE FROM temp.ev")
        db.executemany("INSERT INTO temp.ev VALUES (?, ?, ?, ?)", parsed.events)
        db.execute(_APPLY.format(source="temp.ev", none=NO_REASON))
        db.execute(_KEEP_UNMATCHED)
        db.execute("DELETE FROM temp.ev")
        db.executemany("INSERT OR REPLACE INTO event_files (name, size, mtime_ns) "
                       "VALUES (?, ?, ?)", parsed.files)
        db.executemany(
            "INSERT INTO tracking (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET "
            "v = v + excluded.v",
            [("files", len(parsed.files) - parsed.refused), ("refused", parsed.refused),
             ("status_events", len(parsed.events)),
             ("other_events", parsed.other)])

    def _rematch(self, db) -> None:
        """Match kept events whose message this journal has recorded since."""
        if db.execute("SELECT 1 FROM unmatched u JOIN rows r ON r.message_id = u.message_id "
                      "LIMIT 1").fetchone() is None:
            return
        db.execute(_APPLY.format(source="unmatched", none=NO_REASON))
        db.execute("DELETE FROM unmatched WHERE EXISTS (SELECT 1 FROM rows r "
                   "WHERE r.message_id = unmatched.message_id)")

    # --- results ---------------------------------------------------------------------------

    def finished(self) -> bool:
        """Whether every row has a final status: nothing left to send, each accepted message
        read or failed."""
        return self._tx(lambda db: db.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM rows r LEFT JOIN delivery d ON d.row = r.row "
            "WHERE r.state IN ('pending', 'sending') OR (r.state = 'sent' AND "
            "COALESCE(d.rank, 0) < 3))").fetchone()[0], write=False) == 1

    def summary(self, stale: float, *, stale_limit: int = 20) -> dict:
        """Counts (overall and per channel), times, failure reasons and stale rows."""
        cutoff = self.now() - stale
        return self._tx(lambda db: _summary(db, cutoff, stale, stale_limit), write=False)

    def write_report(self, path: Path, stale: float) -> int:
        """The broadcast report plus the delivery columns, written atomically; rows written."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        cutoff = self.now() - stale
        count = 0
        try:
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(REPORT_COLUMNS + TRACK_COLUMNS)
                for item in self._report_rows():
                    writer.writerow([safe_cell(c) for c in _report_line(item, cutoff)])
                    count += 1
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write the report {path}: {exc.strerror}") from None
        return count

    def _report_rows(self, batch: int = 1000) -> Iterator[tuple]:
        after = 0
        while True:
            rows = self._tx(lambda db, a=after: db.execute(
                "SELECT r.row, r.recipient, r.channel, r.state, r.message_id, r.http_status, "
                "r.error, r.updated, d.rank, d.sent_at, d.delivered_at, d.read_at, "
                "d.failed_at, d.error FROM rows r LEFT JOIN delivery d ON d.row = r.row "
                "WHERE r.row > ? ORDER BY r.row LIMIT ?", (a, batch)).fetchall(), write=False)
            if not rows:
                return
            yield from rows
            after = rows[-1][0]


def iso(ts: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts is not None else ""


def _report_line(item: tuple, cutoff: float) -> list:
    (row, recipient, channel, state, message_id, http_status, error, updated, rank,
     sent_at, delivered_at, read_at, failed_at, derror) = item
    state = "unknown" if state == "sending" else state
    delivery = ""
    if state == "sent":
        if rank is not None and rank >= 2:
            delivery = NAMES[rank]
        else:
            delivery = "stale" if (updated or 0) < cutoff else (
                "sent" if rank == 1 else "no status yet")
    # the broadcast report's columns (report.COLUMNS), then the delivery columns
    return [row, channel, recipient, state, message_id, http_status or "", error, delivery,
            iso(sent_at), iso(delivered_at), iso(read_at), iso(failed_at), derror]


_COUNTS = """
SELECT r.channel, COUNT(*),
       COALESCE(SUM(d.rank >= 1), 0), COALESCE(SUM(d.rank IN (2, 3)), 0),
       COALESCE(SUM(d.rank = 3), 0), COALESCE(SUM(d.rank = 4), 0),
       COALESCE(SUM(COALESCE(d.rank, 0) < 2), 0),
       COALESCE(SUM(COALESCE(d.rank, 0) < 2 AND r.updated < ?), 0)
FROM rows r LEFT JOIN delivery d ON d.row = r.row
WHERE r.state = 'sent' GROUP BY r.channel ORDER BY r.channel
"""
_KEYS = ("accepted", "sent", "delivered", "read", "failed", "no_status", "stale")
_DURATIONS = {
    "sent_to_delivered": "MAX(0, d.delivered_at - COALESCE(d.sent_at, r.updated)) FROM "
                         "delivery d JOIN rows r ON r.row = d.row WHERE r.state = 'sent' AND "
                         "d.rank IN (2, 3) AND d.delivered_at IS NOT NULL",
    "delivered_to_read": "MAX(0, d.read_at - d.delivered_at) FROM delivery d JOIN rows r ON "
                         "r.row = d.row WHERE r.state = 'sent' AND d.rank = 3 AND "
                         "d.read_at IS NOT NULL AND d.delivered_at IS NOT NULL",
}


def _percentile(db, expr: str, n: int, p: float) -> float | None:
    """Nearest-rank percentile, read by SQLite's sort (one value in memory, not all)."""
    if not n:
        return None
    k = max(0, math.ceil(p * n) - 1)
    return db.execute(f"SELECT {expr} ORDER BY 1 LIMIT 1 OFFSET ?", (k,)).fetchone()[0]


def _summary(db, cutoff: float, stale: float, stale_limit: int) -> dict:
    channels = {}
    for channel, *values in db.execute(_COUNTS, (cutoff,)):
        channels[channel or "?"] = dict(zip(_KEYS, values, strict=True))
    total = {k: sum(c[k] for c in channels.values()) for k in _KEYS}
    times = {}
    for name, expr in _DURATIONS.items():
        n = db.execute(f"SELECT COUNT(*) FROM (SELECT {expr})").fetchone()[0]
        times[name] = {"count": n, "median_s": _percentile(db, expr, n, 0.5),
                       "p90_s": _percentile(db, expr, n, 0.9)}
    reasons = [{"reason": reason, "count": count} for reason, count in db.execute(
        "SELECT COALESCE(d.error, ?), COUNT(*) FROM delivery d JOIN rows r ON r.row = d.row "
        "WHERE r.state = 'sent' AND d.rank = 4 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        (NO_REASON,))]
    stale_rows = [{"row": row, "to": to, "channel": channel, "accepted_at": iso(at)}
                  for row, to, channel, at in db.execute(
        "SELECT r.row, r.recipient, r.channel, r.updated FROM rows r LEFT JOIN delivery d "
        "ON d.row = r.row WHERE r.state = 'sent' AND COALESCE(d.rank, 0) < 2 AND "
        "r.updated < ? ORDER BY r.row LIMIT ?", (cutoff, stale_limit))]
    counters = dict(db.execute("SELECT k, v FROM tracking"))
    other = db.execute("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM unmatched").fetchone()
    not_accepted = db.execute(
        "SELECT COUNT(*) FROM rows WHERE state IN ('failed', 'unknown', 'sending')").fetchone()[0]
    pending = db.execute("SELECT COUNT(*) FROM rows WHERE state = 'pending'").fetchone()[0]
    return {
        **total,
        "channels": channels,
        "times": times,
        "failure_reasons": reasons,
        "stale_after_s": stale,
        "stale_rows": stale_rows,
        "not_accepted": not_accepted,
        "not_sent_yet": pending,
        "events": {
            "files": counters.get("files", 0),
            "status_events": counters.get("status_events", 0),
            "other_event_types": counters.get("other_events", 0),
            "refused_files": counters.get("refused", 0),
            "other_broadcasts": other[0],
            "other_broadcast_messages": other[1],
        },
    }


def follow(tracker: Tracker, directory: Path, *, interval: float,
           sleep: Callable[[float], None], on_scan: Callable[[Scan], None]) -> None:
    """Scan, report, and wait ``interval`` again until every row has a final status.

    Stopping it (Ctrl-C) is the caller's: every scan's results are already committed."""
    while True:
        on_scan(tracker.scan(directory))
        if tracker.finished():
            return
        sleep(interval)
