"""Turn any error response body into (code, type, message, param) — never raising.

docs/contract.md lists the shapes seen in the wild: ``{"error": {...}}``, ``{"code", "message"}``,
``{"message"}``, ``{"error": "..."}``, ``{"errors": [...]}``, and bodies that are not JSON at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SHOWN_CHARS = 300
REASONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    413: "payload too large",
    429: "rate limited",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


@dataclass(frozen=True)
class ErrorBody:
    message: str
    code: str | int | None = None
    type: str | None = None
    param: str | None = None


def one_line(text: str, limit: int = SHOWN_CHARS) -> str:
    """Collapse whitespace and control characters; cut to ``limit`` characters."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return one_line(value) or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return one_line(json.dumps(value, ensure_ascii=False, default=str))


def _scalar(value: Any) -> str | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return one_line(value, 80) or None
    return None


def _from_errors_list(items: list) -> str | None:
    parts = []
    for item in items[:5]:
        if isinstance(item, dict):
            msg = _text(item.get("message") or item.get("detail") or item.get("error"))
            field = item.get("field") or item.get("param")
            if msg:
                parts.append(f"{field}: {msg}" if isinstance(field, str) else msg)
        elif (msg := _text(item)) is not None:
            parts.append(msg)
    if len(items) > 5:
        parts.append(f"(+{len(items) - 5} more)")
    return one_line("; ".join(parts)) or None


def parse_error_body(status: int, body: bytes, content_type: str | None = None) -> ErrorBody:
    """Extract what the server said about an error, whatever the body looks like."""
    fallback = REASONS.get(status, "error")
    text = body.decode("utf-8", errors="replace") if body else ""
    if not text.strip():
        return ErrorBody(f"{fallback} (empty response body)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        kind = f" {content_type.split(';')[0]}" if content_type else ""
        return ErrorBody(f"{fallback}; non-JSON{kind} body: {one_line(text, 200)}")
    if not isinstance(data, dict):
        return ErrorBody(f"{fallback}; unexpected body: {one_line(text, 200)}")
    error = data.get("error")
    if isinstance(error, dict):
        return ErrorBody(
            _text(error.get("message")) or _text(error.get("type")) or fallback,
            _scalar(error.get("code")),
            _scalar(error.get("type")) if isinstance(error.get("type"), str) else None,
            error.get("param") if isinstance(error.get("param"), str) else None,
        )
    if isinstance(data.get("errors"), list) and data["errors"]:
        return ErrorBody(_from_errors_list(data["errors"]) or fallback, _scalar(data.get("code")))
    message = _text(data.get("message")) or _text(error) or _text(data.get("detail"))
    return ErrorBody(
        message or f"{fallback}; body: {one_line(text, 200)}",
        _scalar(data.get("code")),
        data.get("type") if isinstance(data.get("type"), str) else None,
    )
