"""Broadcasts over days: history, opt-outs and ``--exclude`` before a run; discard; listing runs."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services import optout
from cloudchat_cli.services.broadcast import history as hist
from cloudchat_cli.services.broadcast import service
from cloudchat_cli.services.broadcast.journal import WITHHELD as WITHHELD
from cloudchat_cli.services.broadcast.journal import Journal, JournalMoved
from cloudchat_cli.services.broadcast.lock import JournalLock, holder
from cloudchat_cli.services.broadcast.plan import BroadcastOptions
from cloudchat_cli.services.messages import (
    CHANNELS,
    InvalidMessage,
    match_key,
    normalise_recipient,
    parse_channel,
)


@dataclass
class Withheld:
    """What a run leaves out, and why."""

    already_sent: int = 0
    last_sent_at: float | None = None
    again: bool = False  # counted but sent anyway (--again)
    opted_out: int = 0
    excluded: int = 0


def day(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts)) if ts else "?"


def withhold(
    journal: Journal, *, key: str, profile: str, again: bool, fresh: bool,
    exclude: Path | None = None, default_country_code: str = "",
    current: Path | None = None,
) -> Withheld:
    """Mark the journal's pending rows that must not be sent this run.

    Opt-outs and ``--exclude`` apply to every run (an opt-out that came in since the last run of
    an unfinished broadcast is respected on resume). History applies to a fresh plan: rows an
    earlier run already sent are withheld, or with ``again`` only counted."""
    out = Withheld(again=again)
    listed = optout.optout_path(profile)
    if listed.exists():
        optout.OptoutList(profile, default_country_code).close()  # creates/migrates the schema
        with journal.attached(listed, "o") as alias:
            out.opted_out = journal.withhold_opted_out(alias)
    if exclude is not None:
        out.excluded = journal.withhold_recipients(
            exclude_recipients(exclude, default_country_code), f"excluded by --exclude {exclude}")
    if fresh:
        history = hist.History(key, service.journals_dir())
        try:
            history.sync(current=current)
        finally:
            history.close()
        with journal.attached(history.path, "h") as alias:
            out.already_sent, out.last_sent_at = journal.withhold_sent_before(
                alias, apply=not again)
    return out


def open_run(path: Path, info, options, *, explicit: bool, again: bool,
             identity: service.Identity) -> service.Opened:
    """``service.open_journal``, then keep history up to date: a journal archived to make
    room is read into it, and the journal about to run becomes one of its sources."""
    opened = service.open_journal(path, info, options, explicit=explicit, again=again,
                                  identity=identity)
    try:
        if opened.archived is not None:
            record(opened.archived, identity.key)
        if "broadcast_key" not in opened.journal.meta():  # one an older version began
            opened.journal.set_meta(broadcast_key=identity.key)
        register(path, identity.key)
    except BaseException:
        opened.journal.close()
        raise
    return opened


def register(journal_path: Path, key: str) -> None:
    """Make ``journal_path`` one of the broadcast's journals its history reads."""
    history = hist.History(key, service.journals_dir())
    try:
        history.register(journal_path)
    finally:
        history.close()


def record(journal_path: Path, key: str) -> None:
    """Copy what this run sent into its broadcast's history (after a run, and on archiving)."""
    history = hist.History(key, service.journals_dir())
    try:
        history.ingest(journal_path)
    finally:
        history.close()


def check_exclude(path: Path, default_country_code: str = "") -> int:
    """Read an --exclude file through once: a bad line fails before the run starts."""
    return sum(1 for _ in exclude_recipients(path, default_country_code))


def exclude_recipients(path: Path, default_country_code: str = "") -> Iterator[str]:
    """Every form (as a match key) a listed recipient takes on the channels it is valid for (a
    CSV may say)."""
    for line, channel, raw, _note in optout.read_list_file(path, ""):
        forms = set()
        try:
            channels = [parse_channel(channel)] if channel else list(CHANNELS)
            for ch in channels:
                try:
                    forms.add(match_key(ch, normalise_recipient(ch, raw, default_country_code)))
                except InvalidMessage:
                    if channel:
                        raise
        except InvalidMessage as exc:
            raise UsageError(f"{path}, line {line}: {exc.message}") from None
        if not forms:
            raise UsageError(f"{path}, line {line}: {raw[:40]!r} is not a recipient on any "
                             "channel")
        yield from forms


# --- discard -----------------------------------------------------------------------------------


@dataclass
class Held:
    """A journal locked for discarding."""

    path: Path
    journal: Journal
    lock: JournalLock
    meta: dict
    counts: dict

    @property
    def keeps_history(self) -> bool:
        """Sent or possibly sent rows: archived, never deleted."""
        c = self.counts
        return bool(c["sent"] + c["unknown"] + c["sending"])

    def release(self) -> None:
        self.journal.close()
        self.lock.release()


def hold_for_discard(path: Path) -> Held:
    """Lock ``path``'s broadcast (refused while a run holds it) and read what it holds."""
    if not path.is_file():
        raise UsageError(f"no broadcast journal at {path}; nothing to discard",
                         hint="`cloudchat broadcast status` lists the broadcasts")
    lock = JournalLock.acquire(path)  # JournalBusy (exit 2) while a run is active
    try:
        journal = Journal(path)
        meta, counts = journal.meta(), service.settled_counts(journal)
    except BaseException:
        lock.release()
        raise
    counts["sending"] = 0
    if meta.get("archived_at") or hist.FINAL.search(path.name):
        journal.close()
        lock.release()
        raise UsageError(f"{path} is already archived: it only keeps its history",
                         hint="nothing to discard; leave it where it is")
    return Held(path, journal, lock, meta, counts)


def discard(held: Held) -> Path | None:
    """Archive the journal (it sent something: its history keeps protecting) or delete it.

    Returns the archive's path, or None when deleted. Releases the lock."""
    try:
        if held.keeps_history:
            held.journal.set_meta(discarded_at=str(time.time()))
            target = service.archive(held.journal)
            key = held.meta.get("broadcast_key")
            if key:
                record(target, key)
            return target
        held.journal.discard()
        return None
    finally:
        held.lock.release()


# --- status ------------------------------------------------------------------------------------


def all_journals() -> list[Path]:
    """The default journals (current and archived) and every explicit one history knows."""
    found = {p.resolve() for p in service.list_journals()}
    found |= set(hist.all_sources())
    dated = []
    for path in found:
        try:
            dated.append((path.stat().st_mtime, path))
        except OSError:
            continue  # removed since (a run archiving it, a clean-up)
    return [path for _, path in sorted(dated, reverse=True)]


SQLITE_MAGIC = b"SQLite format 3\x00"


def is_journal(path: Path) -> bool:
    """A journal is an SQLite file (a damaged one keeps its name); a CSV or workbook names
    its broadcast instead."""
    if path.suffix.lower() == ".sqlite3":
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def runs_of(file: Path, profile: str, api: str) -> list[Path]:
    """The journals (current, archived, explicit) of the broadcast of ``file`` (its CSV or
    workbook) for this profile and API, newest first; read only."""
    key = service.broadcast_key(BroadcastOptions(csv_path=file), profile, api)
    folder = service.journals_dir()
    found = {p.resolve() for p in folder.glob(f"{key}.*sqlite3")
             if p.name == f"{key}.sqlite3" or hist.FINAL.search(p.name)}
    history = hist.history_path(key)
    if history.is_file():
        found.update(hist.sources_in(history))
    dated = []
    for path in found:
        try:
            dated.append((path.stat().st_mtime, path))
        except OSError:
            continue
    return [path for _, path in sorted(dated, reverse=True)]


def describe(path: Path) -> dict:
    """One run: when, who, what, how far; ``state`` is running, unfinished, finished or
    archived."""
    running = holder(path)
    if not path.is_file():  # opening it would create an empty journal there
        raise UsageError(f"no journal at {path}")
    jr = Journal(path)
    try:
        meta = jr.meta()
        counts = jr.counts() if running else {**service.settled_counts(jr), "sending": 0}
    finally:
        jr.close()
    template = meta.get("template_sha256")
    if template is None and meta.get("options_json"):  # journals from before it was kept
        try:
            template = service.template_digest(json.loads(meta["options_json"]).get("template"))
        except (ValueError, AttributeError):
            template = None
    archived = bool(meta.get("archived_at")) or bool(hist.FINAL.search(path.name))
    if running:
        state = "running"
    elif archived:
        state = "archived"
    elif counts["pending"] == 0 and meta.get("preflight_done") == "1":
        state = "finished"
    else:
        state = "unfinished"
    return {
        "journal": str(path), "csv": meta.get("csv_path"), "profile": meta.get("profile"),
        "template_sha256": template, "started_at": _float(meta.get("created_at")),
        "finished_at": _float(meta.get("finished_at")),
        "archived_at": _float(meta.get("archived_at")), "state": state, **counts,
        "running_pid": running,
    }


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def mark_finished(journal: Journal) -> None:
    """Record when a run left nothing pending (shown by ``broadcast status``)."""
    counts = journal.counts()
    if counts["pending"] == 0 and counts["sending"] == 0:
        meta = journal.meta()
        if not meta.get("finished_at"):
            journal.set_meta(finished_at=str(time.time()))


def after_run(journal: Journal) -> None:
    """Once a run ends (or finds nothing to do): note when it finished, and put what it sent
    into its broadcast's history (so another journal of the same CSV is protected too)."""
    try:
        journal.verify_path()
    except JournalMoved:
        return  # its record was saved aside (or could not be); never recreate the path
    mark_finished(journal)
    key = journal.meta().get("broadcast_key")
    if key:
        with contextlib.suppress(hist.HistoryError):  # a source already: re-read next run
            record(journal.path, key)

