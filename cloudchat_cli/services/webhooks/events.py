"""Webhook events: parse a body, build realistic ones for ``trigger`` (what people read of
one is output/webhooks.py's ``summary_line``)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

from cloudchat_cli.core.errors import UsageError

EVENTS = ("message.received", "message.status")
STRING_FIELDS = {"text", "from", "pushName", "message_id", "id", "session_id", "status"}


def parse_body(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (it may still verify)."""
    try:
        data = json.loads(body, parse_int=_int)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _int(text: str) -> int | float:
    """A JSON integer; one longer than Python converts (4,300 digits) becomes a float rather
    than making the whole event "not JSON" (the body itself is kept byte-exact)."""
    return int(text) if len(text) <= 4000 else float(text)


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(8)}"


def build_event(
    event: str,
    *,
    channel: str = "whatsapp",
    sets: list[str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A realistic event (fresh id and timestamp), with ``--set path=value`` overrides."""
    if event not in EVENTS:
        raise UsageError(f"unknown event {event!r}: use {' or '.join(EVENTS)}")
    if event == "message.received":
        data: dict[str, Any] = {"from": "6281234567890", "pushName": "John Doe",
                                "text": "Halo, saya tertarik produk Anda", "media": None}
    else:
        data = {"message_id": f"msg_{secrets.token_hex(8)}", "status": "delivered"}
    body = {
        "event": event,
        "id": new_event_id(),
        "timestamp": int(now if now is not None else time.time()),
        "channel": channel,
        "session_id": str(uuid.uuid4()),
        "data": data,
    }
    for item in sets or []:
        apply_set(body, item)
    return body


def apply_set(body: dict[str, Any], item: str) -> None:
    """``data.text=Halo`` sets a (nested) field; a JSON value (``data.media=null``) is parsed."""
    path, sep, raw = item.partition("=")
    keys = path.strip().split(".")
    if not sep or not all(k.strip() for k in keys):
        raise UsageError(f"--set {item!r} is not path=value (e.g. data.text=Halo)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if keys[-1] in STRING_FIELDS and not isinstance(value, str):
        value = raw  # a phone number or numeric text stays a string
    node = body
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value
