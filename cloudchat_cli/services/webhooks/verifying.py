"""``webhook verify``: one body, a captured raw request, or a directory of saved events."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudchat_cli.core.errorbody import one_line
from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.webhooks import events
from cloudchat_cli.services.webhooks.rawrequest import parse_raw_request
from cloudchat_cli.services.webhooks.signature import HEADER, SignatureFormatError, verify
from cloudchat_cli.services.webhooks.store import EventStore

MAX_INPUT = 64 * 1024 * 1024


@dataclass
class VerifyResult:
    valid: bool
    reason: str
    source: str = "body"
    matched: int | None = None
    secrets: int = 1
    event: dict[str, Any] | None = None
    body_preview: str = ""

    @property
    def event_id(self) -> str | None:
        value = (self.event or {}).get("id")
        return value if isinstance(value, str) else None

    @property
    def event_name(self) -> str | None:
        value = (self.event or {}).get("event")
        return value if isinstance(value, str) else None

    @property
    def summary_line(self) -> str:
        if self.event is None:
            return f"(body is not JSON: {self.body_preview})" if self.body_preview else ""
        return events.summary_line(self.event)

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "reason": self.reason, "source": self.source,
                "matched_secret": None if self.matched is None else self.matched + 1,
                "event": events.summary(self.event) or None,
                "json": self.event is not None}


def verify_body(body: bytes, signature: str | None, secrets: list[str], *,
                max_age: float | None = None, source: str = "body",
                now: float | None = None) -> VerifyResult:
    """Verify the exact bytes; then, if asked, the event's age."""
    event = events.parse_body(body)
    preview = "" if event is not None else one_line(body.decode("utf-8", "replace"), 80)
    base = {"source": source, "secrets": len(secrets), "event": event, "body_preview": preview}
    if not signature:
        return VerifyResult(False, f"no {HEADER} given", **base)
    try:
        matched = verify(secrets, body, signature)
    except SignatureFormatError as exc:
        return VerifyResult(False, exc.message, **base)
    if matched is None:
        return VerifyResult(False, "invalid signature: it does not match this body with the "
                            "configured secret(s)", **base)
    if max_age is not None:
        stamp = (event or {}).get("timestamp")
        if not isinstance(stamp, int | float) or isinstance(stamp, bool):
            return VerifyResult(False, "valid signature, but the body has no numeric timestamp "
                                "to check --max-age against", matched=matched, **base)
        age = (time.time() if now is None else now) - stamp
        if age > max_age:
            return VerifyResult(False, f"valid signature, but the event is stale: {age:.0f} s "
                                f"old (--max-age {max_age:g})", matched=matched, **base)
    return VerifyResult(True, "valid signature", matched=matched, **base)


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_INPUT:
            raise UsageError(f"{path} is larger than {MAX_INPUT // (1024 * 1024)} MiB")
        return path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def verify_request_file(path: Path, secrets: list[str], *,
                        max_age: float | None = None) -> VerifyResult:
    request = parse_raw_request(_read(path))
    return verify_body(request.body, request.header(HEADER), secrets, max_age=max_age,
                       source=str(path))


def verify_dir(directory: Path, secrets: list[str], *,
               max_age: float | None = None) -> list[VerifyResult]:
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    saved = EventStore(directory).load_all()
    if not saved:
        raise UsageError(f"no saved events in {directory}",
                         hint="`cloudchat webhook listen --save DIR` writes them")
    return [verify_body(item.body, item.meta.get("signature"), secrets, max_age=max_age,
                        source=f"{item.key}.json") for item in saved]
