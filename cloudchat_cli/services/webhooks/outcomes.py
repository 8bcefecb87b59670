"""What the listener makes of one request: the answer to show and send, or an event to save."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Delivery:
    """What happened to one request, for display."""

    received_at: float
    status: int
    outcome: str  # accepted | duplicate | rejected
    reason: str = ""  # what the sender is told (no local paths)
    event: dict[str, Any] | None = None
    event_id: str | None = None
    verified: bool = False
    saved: Path | None = None
    detail: str = ""  # what only the person running the listener is told (stderr)


@dataclass
class Accepted:
    """A verified, new event on its way to being saved and acknowledged."""

    received_at: float
    key: str
    body: bytes
    headers: dict[str, str]
    event: dict[str, Any]
    event_id: str | None
    verified: bool
    secret: int | None = None  # which configured secret verified it (the dedupe namespace)
