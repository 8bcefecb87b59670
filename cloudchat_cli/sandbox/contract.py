"""What the sandbox accepts on ``POST /messages``, checked strictly (docs/contract.md).

Deliberately separate from the client's (lenient, normalising) validation in
``services/messages.py``: the server receives only canonical values, and the two must not share
bugs.
"""

from __future__ import annotations

import re
from typing import Any

CHANNELS = ("whatsapp", "telegram", "instagram", "messenger")
MEDIA_TYPES = ("image", "video", "audio", "document")
RECIPIENT = {
    "whatsapp": re.compile(r"[1-9][0-9]{7,14}"),
    "telegram": re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}"),
    "instagram": re.compile(r"[0-9]{1,32}"),
    "messenger": re.compile(r"[0-9]{1,32}"),
}


# Sandbox convention, so a server-side 400 can be produced on purpose: such numbers "do not exist".
UNREGISTERED_SUFFIX = "0000"


def check_message(body: Any) -> tuple[str, str, str] | None:
    """Return (param, message, type) for the first problem with ``body``, or None if valid."""
    problem = _check(body)
    if problem is None:
        return None
    param, message = problem
    kind = "invalid_recipient" if "not registered" in message else "invalid_request"
    return param, message, kind


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _string(body: dict, name: str) -> tuple[str, str] | None:
    """The problem with a required string field, or None."""
    value = body.get(name)
    if value is None:
        return name, f"missing required parameter: {name}"
    if not isinstance(value, str):
        return name, f"{name} must be a string, not {json_type(value)}"
    return None


def _check(body: Any) -> tuple[str, str] | None:
    if not isinstance(body, dict):
        return "body", f"request body must be a JSON object, not {json_type(body)}"
    channel = body.get("channel")
    if problem := _string(body, "channel"):
        return problem
    if channel not in CHANNELS:
        return "channel", f"channel must be one of {', '.join(CHANNELS)}"
    to = body.get("to")
    if problem := _string(body, "to"):
        return problem
    if not to:
        return "to", "missing required parameter: to"
    if not RECIPIENT[channel].fullmatch(to):
        return "to", f"invalid recipient for {channel}"
    if channel == "whatsapp" and to.endswith(UNREGISTERED_SUFFIX):
        return "to", f"{to} is not registered on WhatsApp (sandbox: numbers ending in 0000)"
    kind = body.get("type", "text")
    if not isinstance(kind, str):
        return "type", f"type must be a string, not {json_type(kind)}"
    if kind == "text":
        text = body.get("text")
        if problem := _string(body, "text"):
            return problem
        if not text.strip():
            return "text", "missing required parameter: text"
        if len(text) > 4096:
            return "text", "text must be at most 4096 characters"
        return None
    if kind not in MEDIA_TYPES:
        return "type", "type must be one of text, " + ", ".join(MEDIA_TYPES)
    media = body.get("media")
    if not isinstance(media, dict):
        return "media", f"missing required parameter: media (for type {kind})"
    url = media.get("url")
    if not isinstance(url, str) or not re.fullmatch(r"https://[^\s/?#@]+([/?#]\S*)?", url):
        return "media.url", "media.url must be an https:// URL"
    for key in ("caption", "filename"):
        if key in media and not isinstance(media[key], str):
            return f"media.{key}", f"media.{key} must be a string"
    return None
