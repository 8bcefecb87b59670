"""Saved webhook events: one JSON file per event with the exact body, signature and headers.

The body is kept as a string when it is UTF-8 (``jq -r .body`` gives the exact bytes back) and
as ``body_base64`` otherwise. Names derive from a hash of the event id, so any id (``../``, NUL,
10 kB long) gives a safe name inside the directory, and a retry of the same event finds its
file (deduplication across restarts). The file is written, fsynced, and the directory fsynced
before the listener answers 200.

Under load the listener saves through a ``Flusher``: one thread that takes every event waiting,
writes the files, fsyncs each, and fsyncs the directory once for the whole batch (a group
commit). A thread per delivery spent more CPU handing the GIL around and waking each other than
on the saves themselves (bench/listener.py: 50 senders, 2,000 deliveries).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import UsageError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# The headers of a delivery that are kept with the event and sent again when it is forwarded
# or replayed (saved lower-case, sent with CloudChat's own spelling).
FORWARD_HEADERS = {"content-type": "Content-Type", "x-cloudchat-signature": "X-CloudChat-Signature",
                   "x-cloudchat-event": "X-CloudChat-Event", "user-agent": "User-Agent"}


def original_headers(meta: dict) -> dict[str, bytes]:
    """The CloudChat headers a saved event arrived with, to send it on exactly as received.

    Values are the bytes received (headers are read as latin-1), so a non-ASCII byte goes out
    as it came in; a value that no request could carry (a control character, a character
    beyond latin-1: a hand-edited file) is left out rather than failing every attempt.
    """
    saved = meta.get("headers") if isinstance(meta.get("headers"), dict) else {}
    values = {FORWARD_HEADERS[k]: v for k, v in saved.items() if k in FORWARD_HEADERS}
    signature = meta.get("signature")
    if "X-CloudChat-Signature" not in values and signature is not None:
        values["X-CloudChat-Signature"] = signature
    headers = {}
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            continue
        if not any(b < 0x20 or b == 0x7F for b in raw if b != 0x09):
            headers[name] = raw
    return headers


def event_key(event_id: str | None, body: bytes) -> str:
    """A stable, filesystem-safe key: readable prefix of the id plus a hash of it."""
    ident = event_id if event_id else "body:" + hashlib.sha256(body).hexdigest()
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", event_id or "noid")[:40].strip("_") or "event"
    return f"{readable}-{digest}"


def _complete(path: Path) -> bool:
    """Whether a saved event was written to the end (it ends with the newline written last)."""
    try:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
    except OSError:
        return False


@dataclass
class SavedEvent:
    key: str
    body: bytes
    meta: dict


@dataclass
class PendingSave:
    """One event on its way to disk; ``error`` is set when it could not be saved."""

    path: Path
    data: bytes
    token: object = None  # the caller's, handed back when the batch is done
    error: OSError | None = None
    key: str = ""
    received_at: float = 0.0


def write_batch(directory: Path, batch: list[PendingSave]) -> bool:
    """Write, then fsync each file, then fsync the directory once: the group commit.

    No temp file + rename: on ext4 the rename made each save 7x slower under 50 concurrent
    deliveries (bench/listener.py). A crash mid-write leaves a file without its final newline,
    which ``keys()`` does not count, so CloudChat's retry is saved again. Writing the whole
    batch (and starting its writeback) before the first fsync lets the filesystem commit the
    batch together: the first fsync does the work and the others find it done.

    A directory removed while the listener runs is created again (one stat per batch); the
    result says whether that happened. If it cannot be, every event of the batch fails.
    """
    recreated = False
    if not os.path.isdir(directory):
        with contextlib.suppress(OSError):
            paths.ensure_private_dir(directory)
            recreated = os.path.isdir(directory)
    fds: list[tuple[PendingSave, int]] = []
    for item in batch:
        try:
            fd = os.open(item.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            item.error = exc
            continue
        fds.append((item, fd))
        try:
            view = memoryview(item.data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            item.error = exc
            continue
        _start_writeback(fd)
    for item, fd in fds:
        try:
            if item.error is None:
                os.fsync(fd)
        except OSError as exc:
            item.error = exc
        finally:
            os.close(fd)
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        for item in batch:
            item.error = item.error or exc
    return recreated


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file out now (Linux: POSIX_FADV_DONTNEED begins
    writeback of dirty pages), as PostgreSQL's ``pg_flush_data`` does. Only a hint: the fsync
    still guarantees durability. Started for the whole batch before the first fsync, the
    writeback proceeds together: +30-70 % saves/s for batches of 8-50 on ext4 here
    (bench/saves.py)."""
    if _FADVISE is not None:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, _FADVISE)


_FADVISE = getattr(os, "POSIX_FADV_DONTNEED", None) if hasattr(os, "posix_fadvise") else None


class Flusher:
    """A thread that saves what is submitted, taking every event waiting as one batch;
    ``on_done(batch)`` runs on it after each batch (one call per batch, so an event loop is
    woken once per batch, not once per event).

    One thread: with 50 concurrent senders, 4 or 8 threads each taking batches gave a worse p99
    (85-120 ms against 38-58 ms, bench/listener.py), as the batches came out uneven.
    """

    def __init__(self, directory: Path, on_done: Callable[[list[PendingSave]], None],
                 max_batch: int = 64, on_notice: Callable[[str], None] = lambda m: None,
                 after_write: Callable[[list[PendingSave]], None] | None = None):
        self.dir = directory
        self.on_done = on_done
        self.after_write = after_write
        self.on_notice = on_notice
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[PendingSave | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="save", daemon=True)
        self._thread.start()

    def submit(self, item: PendingSave) -> None:
        self._queue.put(item)

    def close(self) -> None:
        """Save what was submitted, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                if write_batch(self.dir, batch):
                    self.on_notice(f"{self.dir} had been removed: created it again")
                if self.after_write is not None:  # e.g. queue them for forwarding
                    self.after_write([item for item in batch if item.error is None])
            except Exception as exc:  # a bug must fail this batch, not every later save
                for item in batch:
                    item.error = item.error or OSError(f"internal error: {exc!r}")
            self.on_done(batch)


class EventStore:
    """A directory of saved events."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        # Run on the save thread after each batch is on disk, before the 200s go out.
        self.after_write: Callable[[list[PendingSave]], None] | None = None
        try:
            paths.ensure_private_dir(self.dir)
        except OSError as exc:
            raise UsageError(f"cannot use {self.dir} to save events: {exc.strerror}") from None

    def keys(self) -> set[str]:
        """Keys of the events completely saved (read once at start, for deduplication)."""
        return {p.stem for p in self.dir.glob("*.json") if _complete(p)}

    def pending(self, key: str, body: bytes, meta: dict, token: object = None) -> PendingSave:
        """The file for one event (exact body, its metadata, ``saved_at``), ready to write."""
        record = {**meta, "saved_at": time.time()}
        try:
            record["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(body).decode()
        try:
            data = json.dumps(record, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate in the id: \u escapes keep it exact
            data = json.dumps(record).encode()
        data += b"\n"
        received = meta.get("received_at")
        return PendingSave(self.dir / f"{key}.json", data, token, key=key,
                           received_at=received if isinstance(received, float) else time.time())

    def save(self, key: str, body: bytes, meta: dict) -> Path:
        """Save one event durably now (file and directory fsynced); raise OSError if not."""
        item = self.pending(key, body, meta)
        write_batch(self.dir, [item])
        if item.error is not None:
            raise item.error
        return item.path

    def flusher(self, on_done: Callable[[list[PendingSave]], None],
                on_notice: Callable[[str], None] = lambda m: None) -> Flusher:
        return Flusher(self.dir, on_done, on_notice=on_notice, after_write=self.after_write)

    def load(self, key: str) -> SavedEvent | None:
        """One saved event, or None if its file is missing, incomplete or unreadable."""
        path = self.dir / f"{key}.json"
        if not _complete(path):
            return None
        event = _read_event(path)
        return event if event.meta.get("_has_body") else None

    def remove(self, key: str) -> None:
        with contextlib.suppress(OSError):
            (self.dir / f"{key}.json").unlink()

    def load_all(self) -> list[SavedEvent]:
        """Every saved event, oldest first; unreadable files come back with an empty body."""
        events = [_read_event(path) for path in self.dir.glob("*.json")]
        events.sort(key=lambda e: (_number(e.meta.get("received_at")), e.key))
        return events


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _read_event(path: Path) -> SavedEvent:
    """A saved event; an unreadable file comes back with an empty body and no metadata."""
    record: dict = {}
    with contextlib.suppress(OSError, ValueError, RecursionError):
        record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        record = {}
    body = record.pop("body", None)
    encoded = record.pop("body_base64", None)
    raw = b""
    if isinstance(body, str):
        raw = body.encode("utf-8", "surrogatepass")
        record["_has_body"] = True  # a body was there (it may be empty)
    elif isinstance(encoded, str):
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(encoded, validate=True)
            record["_has_body"] = True
    return SavedEvent(path.stem, raw, record)


class NotSavedEvent(ValueError):
    """A file in the events directory that is not an event saved by ``webhook listen --save``."""


def read_saved(path: Path) -> SavedEvent | None:
    """One saved event, read on its own (flat memory over any number of files).

    ``None`` while the file is still being written (no final newline yet: read it later);
    ``NotSavedEvent`` for a file that is not a saved event (another tool's file, a corrupt one);
    ``OSError`` when it cannot be read."""
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        return None
    try:
        record = json.loads(data)
    except ValueError:
        raise NotSavedEvent("not JSON") from None
    if not isinstance(record, dict):
        raise NotSavedEvent("not a saved event (no body)")
    body, encoded = record.pop("body", None), record.pop("body_base64", None)
    if isinstance(body, str):
        try:
            return SavedEvent(path.stem, body.encode("utf-8"), record)
        except UnicodeEncodeError:
            raise NotSavedEvent("its body is not valid text") from None
    if isinstance(encoded, str):
        try:
            return SavedEvent(path.stem, base64.b64decode(encoded, validate=True), record)
        except ValueError:
            raise NotSavedEvent("its body_base64 is not base64") from None
    raise NotSavedEvent("not a saved event (no body)")
