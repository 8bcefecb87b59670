"""Broadcast orchestration: which journal, resume or refuse, preflight, report."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast import report
from cloudchat_cli.services.broadcast.csvsource import CsvInfo
from cloudchat_cli.services.broadcast.journal import Journal, JournalError, JournalMoved
from cloudchat_cli.services.broadcast.lock import JournalLock
from cloudchat_cli.services.broadcast.plan import BroadcastOptions
from cloudchat_cli.services.broadcast.report import safe_cell as safe_cell


def journals_dir() -> Path:
    return paths.state_dir() / "broadcasts"


def broadcast_key(options: BroadcastOptions, profile: str, base_url: str) -> str:
    """Names a broadcast: its CSV path, profile and API (its default journal and history)."""
    ident = json.dumps([str(Path(options.csv_path).resolve()), profile, base_url])
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def default_journal_path(options: BroadcastOptions, profile: str, base_url: str) -> Path:
    """One journal per (CSV path, profile, API): re-running the same command finds it."""
    return journals_dir() / f"{broadcast_key(options, profile, base_url)}.sqlite3"


@dataclass(frozen=True)
class Identity:
    """Who runs a broadcast: recorded in its journal, and the key of its history."""

    profile: str
    api: str
    key: str  # broadcast_key(): names its history


@dataclass
class Opened:
    journal: Journal
    resumed: bool  # preflight already done by an earlier run
    archived: Path | None = None
    finished: bool = False  # the same broadcast, already run to its end: nothing to do
    replaced: bool = False  # an unfinished journal that had sent nothing was replaced


def open_journal(
    path: Path, info: CsvInfo, options: BroadcastOptions, *, explicit: bool,
    again: bool = False, identity: Identity | None = None,
) -> Opened:
    """Lock and open (or create) the journal; refuse one that belongs to another CSV or template.

    The lock is taken before anything is read or changed (another run may be archiving or
    writing this journal) and is held until ``Journal.close()``. A finished journal of the same
    CSV and options is returned as ``finished`` (nothing to do), unless ``again``: then it is
    archived like one of another CSV, and a new run starts."""
    try:
        paths.ensure_private_dir(path.parent)
        lock = JournalLock.acquire(path)
    except OSError as exc:
        raise UsageError(f"cannot lock the journal {path}: {exc.strerror}") from None
    try:
        opened = _open_locked(path, info, options, explicit=explicit, again=again,
                              identity=identity)
    except BaseException:
        lock.release()
        raise
    opened.journal.hold(lock)
    return opened


def attempted(counts: dict[str, int]) -> int:
    """Rows whose request went out (or may have): a journal without any holds no history."""
    return counts["sent"] + counts["failed"] + counts["unknown"] + counts["sending"]


def _open_locked(
    path: Path, info: CsvInfo, options: BroadcastOptions, *, explicit: bool, again: bool,
    identity: Identity | None,
) -> Opened:
    existed = path.exists()
    journal = Journal(path)
    opened = Opened(journal, resumed=False)
    if existed:
        meta = journal.meta()
        same = (meta.get("csv_sha256") == info.sha256
                and meta.get("options") == options.fingerprint())
        counts = journal.counts()
        unfinished = counts["pending"] + counts["sending"]
        started = meta.get("preflight_done") == "1"
        if same and not (again and started and not unfinished):
            return Opened(journal, resumed=started, finished=started and not unfinished)
        if not attempted(counts):
            # A declined confirmation, or a preflight cut short: nothing went out, nothing
            # to keep; the new run takes its place.
            journal.discard()
            journal = Journal(path)
            opened = Opened(journal, resumed=False, replaced=started)
        elif (explicit and not same) or unfinished:
            journal.close()
            raise _conflict(path, info, meta, counts)
        else:
            archived = archive(journal)
            journal = Journal(path)
            opened = Opened(journal, resumed=False, archived=archived)
    values = dict(
        csv_path=str(info.path.resolve()),
        csv_sha256=info.sha256,
        options=options.fingerprint(),
        options_json=options.describe(),
        template_sha256=template_digest(options.template),
        created_at=str(time.time()),
    )
    if identity is not None:
        values.update(profile=identity.profile, api=identity.api, broadcast_key=identity.key)
    journal.set_meta(**values)
    return opened


def _conflict(path: Path, info: CsvInfo, meta: dict, counts: dict[str, int]) -> UsageError:
    unfinished = counts["pending"] + counts["sending"]
    what = ("the CSV file changed" if meta.get("csv_sha256") != info.sha256
            else "the template or options changed")
    return UsageError(
        f"journal {path} belongs to an unfinished broadcast and {what} since it started "
        f"({counts['sent']} rows sent, {unfinished} not yet)",
        hint="restore the original file and options to resume it, or discard it with "
        f"`cloudchat broadcast discard --journal {path}` (what it sent keeps protecting "
        f"its recipients); `cloudchat broadcast status {path}` shows it",
    )


def check_journal(path: Path, info: CsvInfo, options: BroadcastOptions, *,
                  explicit: bool) -> None:
    """What ``open_journal`` would refuse, for --dry-run: raise the same error, write nothing
    (no lock, no journal created)."""
    if not path.is_file():
        return
    journal = Journal(path)
    try:
        meta = journal.meta()
        counts = journal.counts()
    finally:
        journal.close()
    same = (meta.get("csv_sha256") == info.sha256
            and meta.get("options") == options.fingerprint())
    unfinished = counts["pending"] + counts["sending"]
    if same or not attempted(counts):
        return
    if (explicit and not same) or unfinished:
        raise _conflict(path, info, meta, counts)


def template_digest(template: str | None) -> str:
    """A short name for a template (``-`` when the CSV's ``text`` column is the message)."""
    if template is None:
        return "-"
    return hashlib.sha256(template.encode()).hexdigest()[:12]


def archive(journal: Journal) -> Path:
    """Close a journal and rename it aside (``NAME.done-NS.sqlite3``); the caller holds its lock.

    An archived journal is never written again; history reads it once."""
    path = journal.path
    journal.set_meta(archived_at=str(time.time()))
    journal.close()
    target = path.with_name(f"{path.stem}.done-{time.time_ns()}.sqlite3")
    path.rename(target)
    wal = Path(f"{path}-wal")
    if wal.exists():  # left by another open connection: it may hold committed rows
        wal.rename(Path(f"{target}-wal"))
    Path(f"{path}-shm").unlink(missing_ok=True)
    return target


@dataclass
class Resumed:
    crashed: int  # rows left in `sending` by the last run, now `unknown`
    requeued: int
    states: list[str]


def resume(journal: Journal, *, retry_failed: bool, retry_unknown: bool,
           again: bool = False) -> Resumed:
    """Settle what the last run left behind, then queue what the user asked to resend."""
    crashed = journal.recover_crashed()
    states = ((["failed"] if retry_failed else []) + (["unknown"] if retry_unknown else [])
              + (["already_sent"] if again else []))
    return Resumed(crashed, journal.requeue(states), states)


def settled(state: str) -> str:
    """A row's state once no run is sending it: one left ``sending`` may have gone out."""
    return "unknown" if state == "sending" else state


def settled_counts(journal: Journal) -> dict[str, int]:
    """The journal's counts after a run ended: rows left ``sending`` count as ``unknown``.

    A row stays ``sending`` when the journal could not record its answer (disk full) or the
    run was stopped at once: its request may have reached the server, so it is never
    reported ``pending``."""
    counts = journal.counts()
    counts["unknown"] += counts.pop("sending")
    return counts


def rescue(journal: Journal, moved: JournalMoved) -> Path | None:
    """Save a journal whose path was removed or replaced under a run beside it; None if not."""
    target = moved.path.with_name(f"{moved.path.stem}.saved-{time.time_ns()}.sqlite3")
    try:
        journal.save_copy(target)
    except JournalError:
        return None
    return target


def report_target(path: Path, info: CsvInfo) -> report.ReportTarget:
    """``--report PATH`` checked before anything is sent; it carries the input's columns."""
    return report.target(path, info)


def write_report(journal: Journal, target: report.ReportTarget | Path) -> int:
    """Write the per-row report (.xlsx or CSV) atomically; return the number of rows."""
    return report.write(journal, target)


def list_journals() -> list[Path]:
    folder = journals_dir()
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.sqlite3"), key=lambda p: p.stat().st_mtime, reverse=True)
