"""Webhook events: summarise a body for people, build realistic ones for ``trigger``."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

from cloudchat_cli.core.errorbody import one_line
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


def _text(value: Any, limit: int = 80) -> str:
    if value in (None, ""):
        return ""
    try:
        return one_line(str(value), limit)
    except RecursionError:  # nested deeper than str() goes from here: parsed, not showable
        return "(deeply nested)"


def summary(event: dict[str, Any] | None) -> dict[str, str]:
    """The fields a person wants in one line: event, id, channel, from/text or id/status."""
    if event is None:
        return {}
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    out = {
        "event": _text(event.get("event"), 40),
        "id": _text(event.get("id"), 80),
        "channel": _text(event.get("channel"), 20),
    }
    if event.get("event") == "message.status":
        out["message_id"] = _text(data.get("message_id"), 80)
        out["status"] = _text(data.get("status"), 20)
        if data.get("error"):
            out["error"] = _text(data.get("error"))
    else:
        out["from"] = _text(data.get("from"), 40)
        if data.get("pushName"):
            out["name"] = _text(data.get("pushName"), 40)
        out["text"] = _text(data.get("text"))
    return {k: v for k, v in out.items() if v}


def summary_line(event: dict[str, Any] | None) -> str:
    info = summary(event)
    if not info:
        return "(not a JSON object)"
    head = f"{info.get('event', '?')} {info.get('channel', '')}".strip()
    if "status" in info or "message_id" in info:
        tail = f"{info.get('message_id', '?')} → {info.get('status', '?')}"
        if "error" in info:
            tail += f" ({info['error']})"
    else:
        who = info.get("from", "?") + (f" ({info['name']})" if "name" in info else "")
        tail = f"from {who}: {info.get('text', '')}"
    return f"{head}  {tail}  [{info.get('id', 'no id')}]"


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
