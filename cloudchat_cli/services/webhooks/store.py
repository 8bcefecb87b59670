"""Saved webhook events: one JSON file per event with the exact body, signature and headers.

The body is kept as a string when it is UTF-8 (``jq -r .body`` gives the exact bytes back) and
as ``body_base64`` otherwise. Names derive from a hash of the event id, so any id (``../``, NUL,
10 kB long) gives a safe name inside the directory, and a retry of the same event finds its
file (deduplication across restarts). Each file carries ``"format": 1``; readers take a file
without it as format 1 and refuse a newer format they do not know (``NewerFormat``).

A 200 means the event is on stable storage: its file and its directory entry are synced
before the listener answers. Under load the listener saves through a ``Flusher``: one thread
that takes every event waiting, writes all their files, then makes the whole batch durable
with one sync (a group commit) and wakes the event loop once for the batch. On Linux that sync
is ``syncfs(2)``: on this project's ext4 disk a batch of 50 took 0.8 ms against 3.5 ms for an
fsync per file (bench/saves.py), and the per-file syscalls that remain are what the save thread
spends its time on.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import UsageError

FORMAT = 1  # of a saved event file; a reader refuses a newer one (NewerFormat)
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


def write_batch(directory: Path, batch: list[PendingSave], sync: Sync | None = None) -> bool:
    """Write every file of the batch, then make them all durable with one ``sync`` call (the
    group commit); an event whose file could not be written, or whose sync failed, gets
    ``error`` set. ``sync`` defaults to ``fsync_each``.

    No temp file + rename: on ext4 the rename made each save 7x slower under 50 concurrent
    deliveries (bench/listener.py). A crash mid-write leaves a file without its final newline,
    which ``keys()`` does not count, so CloudChat's retry is saved again.

    A directory removed while the listener runs is created again (one stat per batch); the
    result says whether that happened. If it cannot be, every event of the batch fails.
    """
    recreated = False
    if not os.path.isdir(directory):
        with contextlib.suppress(OSError):
            paths.ensure_private_dir(directory)
            recreated = os.path.isdir(directory)
    fds: list[int] = []
    written: list[PendingSave] = []
    try:
        for item in batch:
            try:
                fd = os.open(item.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:
                item.error = exc
                continue
            fds.append(fd)
            try:
                view = memoryview(item.data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError as exc:
                item.error = exc
                continue
            written.append(item)
        if written:
            try:
                (sync or fsync_each)(directory, fds)
            except OSError as exc:
                for item in written:
                    item.error = exc
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    return recreated


# Makes the files just written (open descriptors) and their directory entries durable, or
# raises OSError; called once per batch, after every file of the batch is written.
Sync = Callable[[Path, list[int]], None]


def fsync_each(directory: Path, fds: list[int]) -> None:
    """fsync(2) each file, then the directory (its new entries), once for all of them."""
    if _FADVISE is not None:  # start every file's writeback before waiting on the first
        for fd in fds:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, _FADVISE)
    for fd in fds:
        os.fsync(fd)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


_FADVISE = getattr(os, "POSIX_FADV_DONTNEED", None) if hasattr(os, "posix_fadvise") else None


class SyncFs:
    """syncfs(2) of the directory's filesystem: one call makes a whole batch durable.

    syncfs(2) (Linux man-pages): "sync() or syncfs() provide the same guarantees as fsync()
    called on every file in the system or filesystem respectively", so every file written
    before the call, and the directory entries naming them, are on stable storage when it
    returns; ext4 then commits its journal (without one, as on the machine this was measured
    on, it writes its metadata blocks) and flushes the disk's cache (``barrier``, the default).
    "Since Linux 5.8, syncfs() will also report an error if one or more inodes failed to be
    written back since the last syncfs() call" -- errors are tracked per open file, so the
    directory stays open for the whole run; before 5.8 a failed writeback went unreported,
    hence ``available()``. It also writes back other programs' dirty data on the same
    filesystem: the price of one sync per batch instead of one per file. On an overlay
    filesystem (containers) syncfs syncs the upper layer, where the events are written.
    """

    def __init__(self, directory: Path):
        # Opened before the first batch is written: it sees that batch's writeback errors.
        # The same filesystem for the whole run, even if the directory is removed and created
        # again (in its parent: a mount point inside the events directory is not supported).
        self._fd: int | None = None
        self._open(directory)

    def _open(self, directory: Path) -> None:
        with contextlib.suppress(OSError):  # removed already: fsync_each until it is back
            self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)

    def __call__(self, directory: Path, fds: list[int]) -> None:
        if self._fd is None:  # not open before these writes: sync them file by file
            fsync_each(directory, fds)
            self._open(directory)
            return
        if _syncfs(self._fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def available() -> bool:
        return _syncfs is not None and _kernel_at_least(5, 8)


def _load_syncfs():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _kernel_at_least(major: int, minor: int) -> bool:
    numbers = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(numbers) and (int(numbers[1]), int(numbers[2])) >= (major, minor)


_syncfs = _load_syncfs()


def default_sync(directory: Path) -> tuple[Sync, Callable[[], None]]:
    """The fastest sync that keeps the guarantee here, and how to release it."""
    if SyncFs.available():
        syncer = SyncFs(directory)
        return syncer, syncer.close
    return fsync_each, lambda: None


class Flusher:
    """A thread that saves what is submitted, taking every event waiting as one batch;
    ``on_done(batch)`` runs on it after each batch is durable (one call per batch, so an event
    loop is woken once per batch, not once per event). ``sync`` is injectable for tests.

    One thread: with 50 concurrent senders, 4 or 8 threads each taking batches gave a worse p99
    (85-120 ms against 38-58 ms, bench/listener.py), as the batches came out uneven; and each
    thread's syscalls hand the GIL back and forth with the event loop.
    """

    def __init__(self, directory: Path, on_done: Callable[[list[PendingSave]], None],
                 max_batch: int = 256, on_notice: Callable[[str], None] = lambda m: None,
                 after_write: Callable[[list[PendingSave]], None] | None = None,
                 sync: Sync | None = None):
        self.dir = directory
        self.on_done = on_done
        self.after_write = after_write
        self.on_notice = on_notice
        self.max_batch = max_batch
        self._release: Callable[[], None] = lambda: None
        if sync is None:
            sync, self._release = default_sync(directory)
        self.sync = sync
        self._queue: queue.SimpleQueue[PendingSave | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="save", daemon=True)
        self._thread.start()

    def submit(self, item: PendingSave) -> None:
        self._queue.put(item)

    def close(self) -> None:
        """Save what was submitted, then stop."""
        self._queue.put(None)
        self._thread.join()
        self._release()

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
                if write_batch(self.dir, batch, self.sync):
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
        self.sync: Sync | None = None  # how the flusher makes a batch durable (None: the best)
        try:
            paths.ensure_private_dir(self.dir)
        except OSError as exc:
            raise UsageError(f"cannot use {self.dir} to save events: {exc.strerror}") from None

    def keys(self) -> set[str]:
        """Keys of the events completely saved (read once at start, for deduplication)."""
        return {p.stem for p in self.dir.glob("*.json") if _complete(p)}

    def pending(self, key: str, body: bytes, meta: dict, token: object = None) -> PendingSave:
        """The file for one event (exact body, its metadata, ``saved_at``), ready to write."""
        record = {"format": FORMAT, **meta, "saved_at": time.time()}
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
        return Flusher(self.dir, on_done, on_notice=on_notice, after_write=self.after_write,
                       sync=self.sync)

    def load(self, key: str) -> SavedEvent | None:
        """One saved event, or None if its file is missing, incomplete or unreadable;
        ``NewerFormat`` if a newer cloudchat saved it."""
        path = self.dir / f"{key}.json"
        if not _complete(path):
            return None
        event = _read_event(path)
        return event if event.meta.get("_has_body") else None

    def remove(self, key: str) -> None:
        with contextlib.suppress(OSError):
            (self.dir / f"{key}.json").unlink()

    def load_all(self) -> list[SavedEvent]:
        """Every saved event, oldest first; unreadable files come back with an empty body.
        ``NewerFormat`` if any was saved by a newer cloudchat (nothing is half read)."""
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
    _check_format(record, path)
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


class NewerFormat(UsageError):
    """A saved event written by a newer cloudchat, in a format this one does not know."""


def _check_format(record: dict, path: Path) -> None:
    """Refuse a newer format; a file without ``format`` (saved before it existed) is 1."""
    value = record.get("format", 1)
    if isinstance(value, int) and not isinstance(value, bool) and value > FORMAT:
        raise NewerFormat(f"{path.name} was saved by a newer cloudchat (saved event format "
                          f"{value}; this version reads format {FORMAT})",
                          hint="upgrade cloudchat to read it")


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
    try:
        _check_format(record, path)
    except NewerFormat as exc:
        raise NotSavedEvent(f"{exc.message}: upgrade cloudchat to read it") from None
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
