"""Saved webhook events: one ``.body`` (exact bytes) and one ``.json`` (signature, headers) each.

Names derive from a hash of the event id, so any id (``../``, NUL, 10 kB long) gives a safe name
inside the directory, and a retry of the same event finds its file (deduplication across
restarts). Both files are fsynced, then the directory, before the listener answers 200.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core import paths
from cloudchat_cli.core.errors import UsageError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def event_key(event_id: str | None, body: bytes) -> str:
    """A stable, filesystem-safe key: readable prefix of the id plus a hash of it."""
    ident = event_id if event_id else "body:" + hashlib.sha256(body).hexdigest()
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", event_id or "noid")[:40].strip("_") or "event"
    return f"{readable}-{digest}"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass
class SavedEvent:
    key: str
    body: bytes
    meta: dict


class EventStore:
    """A directory of saved events."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        try:
            paths.ensure_private_dir(self.dir)
        except OSError as exc:
            raise UsageError(f"cannot use {self.dir} to save events: {exc.strerror}") from None

    def has(self, key: str) -> bool:
        return (self.dir / f"{key}.json").exists()

    def save(self, key: str, body: bytes, meta: dict) -> Path:
        """Write body then metadata, each fsynced, then fsync the directory."""
        _write(self.dir / f"{key}.body", body)
        meta = {**meta, "body_file": f"{key}.body", "saved_at": time.time()}
        _write(self.dir / f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.dir / f"{key}.json"

    def load_all(self) -> list[SavedEvent]:
        """Every saved event, oldest first; unreadable entries are reported, not fatal."""
        events = []
        for meta_path in self.dir.glob("*.json"):
            key = meta_path.stem
            meta: dict = {}
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            body_path = self.dir / f"{key}.body"
            body = body_path.read_bytes() if body_path.is_file() else b""
            events.append(SavedEvent(key, body, meta if isinstance(meta, dict) else {}))
        events.sort(key=lambda e: (e.meta.get("received_at") or 0, e.key))
        return events
