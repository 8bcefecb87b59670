"""``webhook verify``: one body, a captured raw request, or a directory of saved events."""

from __future__ import annotations

import math
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
MAX_FUTURE = 300.0  # s: a timestamp further ahead than any clock skew is a forged or bad one


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


def verify_body(body: bytes, signature: str | None, secrets: list[str], *,
                max_age: float | None = None, source: str = "body",
                now: float | None = None, strict: bool = True) -> VerifyResult:
    """Verify the exact bytes; then, if asked, the event's age.

    A signature that is not a digest in any accepted encoding is bad input (``strict``:
    ``SignatureFormatError``, exit 2), not a mismatch; with ``strict=False`` (a directory of
    saved events) it is reported as that event's result.
    """
    event = events.parse_body(body)
    preview = "" if event is not None else one_line(body.decode("utf-8", "replace"), 80)
    base = {"source": source, "secrets": len(secrets), "event": event, "body_preview": preview}
    if not signature:
        return VerifyResult(False, f"no {HEADER} given", **base)
    try:
        matched = verify(secrets, body, signature)
    except SignatureFormatError as exc:
        if strict:
            raise
        return VerifyResult(False, exc.message, **base)
    if matched is None:
        return VerifyResult(False, "invalid signature: it does not match this body with the "
                            "configured secret(s)", **base)
    if max_age is not None:
        problem = _age_problem((event or {}).get("timestamp"), max_age,
                               time.time() if now is None else now)
        if problem:
            return VerifyResult(False, f"valid signature, but {problem}", matched=matched,
                                **base)
    return VerifyResult(True, "valid signature", matched=matched, **base)


def _age_problem(stamp: object, max_age: float, now: float) -> str | None:
    """Why ``stamp`` fails ``--max-age``: missing, not finite, stale, or from the future."""
    if not isinstance(stamp, int | float) or isinstance(stamp, bool):
        return "the body has no numeric timestamp to check --max-age against"
    try:
        value = float(stamp)
    except OverflowError:  # an integer beyond any float
        value = math.inf
    if not math.isfinite(value):
        return f"the body's timestamp is not a finite number ({one_line(str(stamp), 20)})"
    age = now - value
    if age > max_age:
        return f"the event is stale: {age:.0f} s old (--max-age {max_age:g})"
    if -age > MAX_FUTURE:
        return (f"the event's timestamp is {-age:.0f} s in the future (more than "
                f"{MAX_FUTURE:g} s of clock skew: a replay with a forged or bad time?)")
    return None


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
    if request.head.signatures > 1:
        raise UsageError(f"{path} has {request.head.signatures} {HEADER} headers: a delivery "
                         "carries one")
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
    # --max-age asks whether the event was fresh when it arrived: a saved event is compared
    # with the time it was received, not with now (events saved yesterday were not stale then)
    return [verify_body(item.body, _text(item.meta.get("signature")), secrets,
                        max_age=max_age, source=f"{item.key}.json", strict=False,
                        now=_received(item.meta))
            for item in saved]


def _received(meta: dict) -> float | None:
    """When a saved event arrived (None, i.e. now, for a file without that record)."""
    value = meta.get("received_at")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
