"""Messages: validate and normalise what to send, build the API body, send it.

Every check here runs before a request is spent. Each channel's recipient rule comes from the
channel registry (``core/channels.py``); the sandbox applies its own copy of the rules
server-side.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloudchat_cli.core.channels import (  # noqa: F401  (re-exported: callers import them here)
    CHANNELS,
    MATCH_KEY_SQL,
    Channel,
    InvalidMessage,
    channel_of,
    match_key,
    parse_channel,
)
from cloudchat_cli.core.channels import shown as _shown
from cloudchat_cli.core.errorbody import one_line
from cloudchat_cli.core.errors import UnexpectedResponse

if TYPE_CHECKING:
    from cloudchat_cli.core.http import ApiClient

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_RECIPIENT = 64
MEDIA_TYPES = ("image", "video", "audio", "document")
TYPES = ("text", *MEDIA_TYPES)
RESERVED_FIELDS = frozenset({"channel", "to", "type", "text", "media"})

_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_STRAY_DOT = re.compile(r"(?<![0-9])\.|\.(?![0-9])")
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")
# What a spreadsheet (or pandas) does to a number column; each would send to another number.
_FLOAT = re.compile(r"^[+-]?[0-9]+[.,]0+$")
_SCIENTIFIC = re.compile(r"^[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+$")
# More than six digits before one dot or comma: a decimal point (a number with a fraction), not
# a separator between digit groups.
_DECIMAL = re.compile(r"^[+-]?[0-9]{7,}[.,][0-9]+$")
_DATE = re.compile(r"^(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
                   r"(?:[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?$")
_THOUSANDS = re.compile(r"^[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$")
_APOSTROPHES = "'\u2018\u2019`"
AS_TEXT = ("format the column as Text in the spreadsheet, retype or paste the numbers, and "
           "export again (pandas: read_csv(..., dtype=str))")
_MEDIA_URL = re.compile(r"^https://[^\s/?#@]+(?:[/?#][^\s]*)?$")


def normalise_recipient(channel: str, raw: str, default_country_code: str = "") -> str:
    """Validate ``raw`` for ``channel`` and return it in the form the API expects."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidMessage("recipient is empty", field="to")
    if len(raw) > MAX_RECIPIENT:
        raise InvalidMessage(
            f"recipient is too long ({len(raw)} characters, at most {MAX_RECIPIENT})", field="to"
        )
    if any(not ch.isprintable() for ch in raw):
        raise InvalidMessage(
            f"recipient {_shown(raw)} contains control characters or line breaks", field="to"
        )
    value = raw.strip()
    _refuse_spreadsheet_artefact(value)
    spec = channel_of(channel)
    recipient = _phone_number(spec, value, default_country_code) if spec.phone else value
    if re.fullmatch(spec.recipient, recipient):
        return recipient
    quoted = _shown(value if spec.phone else raw)  # a phone number as trimmed, else as given
    raise InvalidMessage(f"invalid {spec.label} {spec.noun} {quoted}: {spec.rule}", field="to")


def spreadsheet_artefact(value: str) -> str | None:
    """Why ``value`` looks like a number a spreadsheet changed (so its digits are not the ones
    the person wrote), or None."""
    value = value.strip()
    if value[:1] in _APOSTROPHES and len(value) > 1:
        return ("starts with an apostrophe: the spreadsheet's marker for 'this is text' was "
                "exported with the number")
    if _SCIENTIFIC.match(value):
        return ("is in scientific notation: the spreadsheet stored it as a number and rounded "
                "it, so its last digits are lost")
    if _FLOAT.match(value):
        return ("ends in a decimal zero: the column was stored as a number (pandas writes "
                "6281234567891.0 when a column has an empty cell)")
    if _DECIMAL.match(value):
        return ("has a decimal point: the cell held a number with a fraction, which is not a "
                "phone number or an id")
    if _THOUSANDS.match(value):
        return "has thousands separators: the column was formatted as a number"
    if _DATE.match(value):
        return "looks like a date: the cell is formatted as a date"
    return None


def _refuse_spreadsheet_artefact(value: str) -> None:
    why = spreadsheet_artefact(value)
    if why is not None:
        raise InvalidMessage(f"recipient {_shown(value)} {why}", field="to", hint=AS_TEXT)


def _phone_number(spec: Channel, value: str, country_code: str) -> str:
    """The digits of an international phone number written in any common way; the channel's
    recipient rule then checks their count."""
    bad = f"invalid {spec.label} {spec.noun} {_shown(value)}"
    if value.startswith("-"):
        raise InvalidMessage(
            f"{bad}: starts with a minus (the cell held a negative number); a phone number "
            "has none",
            field="to", hint=AS_TEXT,
        )
    if _STRAY_DOT.search(value):
        raise InvalidMessage(f"{bad}: a dot may only separate digit groups", field="to")
    if _TRUNK_ZERO.search(value):
        raise InvalidMessage(
            f"{bad}: the '(0)' is not dialled from abroad",
            field="to",
            hint="remove the (0): +62 (0)812… is written 62812…",
        )
    digits = _PHONE_SEPARATORS.sub("", value)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        if not country_code:
            raise InvalidMessage(
                f"{_shown(value)} is a local number",
                field="to",
                hint="write it with its country code (6281…), or set one: "
                "`cloudchat config set default_country_code 62`",
            )
        digits = country_code + digits[1:]
    if not digits.isascii() or not digits.isdigit():
        raise InvalidMessage(
            f"{bad}: only digits, spaces, dashes, brackets, dots between digits and a leading "
            "+ are allowed",
            field="to",
        )
    return digits


def infer_type(media_url: str | None, explicit: str | None) -> str:
    """``--type`` if given; else the media kind guessed from the URL; else ``text``."""
    if explicit:
        kind = explicit.strip().lower()
        if kind not in TYPES:
            raise InvalidMessage(
                f"unknown message type {_shown(explicit)}: use one of {', '.join(TYPES)}",
                field="type",
            )
        return kind
    if not media_url:
        return "text"
    path = media_url.split("?", 1)[0].split("#", 1)[0].lower()
    ext = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    if ext in {"jpg", "jpeg", "png", "gif", "webp", "bmp", "heic"}:
        return "image"
    if ext in {"mp4", "mov", "3gp", "mkv", "webm", "avi"}:
        return "video"
    if ext in {"mp3", "ogg", "opus", "m4a", "aac", "wav", "amr"}:
        return "audio"
    return "document"


def parse_fields(items: list[str] | None) -> dict[str, str]:
    """Parse repeatable ``--field key=value`` options; reserved keys cannot be overridden."""
    fields: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidMessage(f"--field {_shown(item)} is not key=value", field="field")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", key):
            raise InvalidMessage(f"--field key {_shown(key)} is not a valid name", field="field")
        if key in RESERVED_FIELDS:
            raise InvalidMessage(
                f"--field {key}=… would override a field the CLI sets; use the matching option",
                field="field",
            )
        fields[key] = value
    return fields


@dataclass
class MessageSpec:
    """Everything needed to send one message, before validation."""

    to: str
    channel: str
    text: str | None = None
    type: str | None = None
    media_url: str | None = None
    caption: str | None = None
    filename: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def build_payload(spec: MessageSpec, default_country_code: str = "") -> dict[str, Any]:
    """Validate ``spec`` and return the JSON body for ``POST /messages``."""
    channel = parse_channel(spec.channel)
    to = normalise_recipient(channel, spec.to, default_country_code)
    kind = infer_type(spec.media_url, spec.type)
    body: dict[str, Any] = {"channel": channel, "to": to, "type": kind}
    if kind == "text":
        if spec.media_url or spec.caption or spec.filename:
            raise InvalidMessage(
                "--media-url, --caption and --filename need a media --type", field="type"
            )
        body["text"] = check_text(spec.text)
    else:
        body["media"] = _media(spec)
        if spec.text:
            raise InvalidMessage(
                "a media message takes --caption, not a text argument", field="text"
            )
    for key, value in spec.fields.items():
        if key in RESERVED_FIELDS:
            raise InvalidMessage(f"field {key!r} would override {key}", field="field")
        body[key] = value
    return body


def check_text(text: str | None) -> str:
    if text is None or not text.strip():
        raise InvalidMessage(
            "text is empty", field="text", hint="give it as an argument, or pipe it on stdin"
        )
    if len(text) > MAX_TEXT:
        raise InvalidMessage(
            f"text is {len(text)} characters; the API takes at most {MAX_TEXT}", field="text"
        )
    if "\x00" in text:
        raise InvalidMessage("text contains a NUL character", field="text")
    return text


def check_media_url(url: str | None) -> str:
    if not url:
        raise InvalidMessage("a media message needs --media-url", field="media_url")
    if len(url) > 2048 or not _MEDIA_URL.match(url):
        raise InvalidMessage(
            f"media URL {_shown(url, 60)} must be an https:// URL", field="media_url"
        )
    return url


def _media(spec: MessageSpec) -> dict[str, str]:
    media = {"url": check_media_url(spec.media_url)}
    if spec.caption:
        if len(spec.caption) > MAX_CAPTION:
            raise InvalidMessage(
                f"caption is {len(spec.caption)} characters; at most {MAX_CAPTION}",
                field="caption",
            )
        media["caption"] = spec.caption
    if spec.filename:
        if len(spec.filename) > 255 or any(not ch.isprintable() for ch in spec.filename):
            raise InvalidMessage("filename is too long or has control characters", field="filename")
        media["filename"] = spec.filename
    return media


def send_message(
    client: ApiClient,
    payload: dict[str, Any],
    *,
    wait: bool = True,
    on_send: Callable[[], None] | None = None,
) -> dict:
    """POST the message; return the server's message object.

    Success is positive evidence: a 2xx whose body is a JSON object with an ``id``. Any other
    2xx (an HTML page from a captive portal, truncated JSON, 204, an array) raises
    ``UnexpectedResponse``: the outcome is unknown.
    """
    response = client.request("POST", "messages", json_body=payload, wait=wait, on_send=on_send)
    data = response.json()
    if not _is_message(data):
        raise UnexpectedResponse(
            f"POST {client.url('messages')}: HTTP {response.status} without a message object "
            f"({_describe(response)}) — outcome unknown, the message may have been sent",
            hint="check base_url (`cloudchat config show`): a proxy, captive portal or wrong "
            "server may be answering; check before resending",
        )
    return {
        "response": data,
        "raw": response.body,
        "status": response.status,
        "attempts": response.attempts,
    }


def _is_message(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    ident = data.get("id")
    return (isinstance(ident, str) and bool(ident.strip())) or (
        isinstance(ident, int) and not isinstance(ident, bool))


def _describe(response: Any) -> str:
    """What came back instead of a message, in a few words (never the body's bytes as is)."""
    if not response.body:
        return "empty body"
    kind = one_line(response.headers.get("content-type", ""), 60) or "no Content-Type"
    data = response.json()
    if data is None:
        text = one_line(response.body.decode("utf-8", "replace"), 60)
        return f"{kind} body that is not JSON: {text}"
    if isinstance(data, dict):
        return "a JSON object without an id"
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return f"a JSON {names.get(type(data), 'value')}"
