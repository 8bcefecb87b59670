"""JSON in and out of the sandbox: strict parsing of request bodies, safe serialisation.

Stricter than ``json.loads`` where a real API server is (RFC 8259), and never producing text
that cannot be written as UTF-8 or that splits a JSON-lines record.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(value: Any, separators: tuple[str, str] = (",", ":")) -> str:
    """JSON text, readable (non-ASCII as is) unless it holds a lone surrogate, then escaped.

    A lone UTF-16 surrogate (``"\\ud800"``, from a truncated emoji) is valid JSON but cannot be
    encoded as UTF-8; escaping it keeps answers and the record file valid UTF-8 JSON.
    """
    text = json.dumps(value, ensure_ascii=False, separators=separators)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=separators)
    # Line breaks other than LF that JSON leaves raw: escaped, so one record stays one line
    # for every reader (Python's str.splitlines, JavaScript before ES2019).
    return text.translate(_LINE_BREAKS)


_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class InvalidJSON:
    """A body that is not JSON the sandbox accepts; ``reason`` is the 400's message."""

    def __init__(self, reason: str):
        self.reason = reason


MAX_DEPTH = 64
MAX_INT_DIGITS = 4000


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number with {len(text)} digits is out of range")
    return int(text)


def parse_json(raw: bytes) -> Any:
    """The body as JSON (None if empty), or an ``InvalidJSON`` saying what is wrong.

    Stricter than ``json.loads``: NaN and Infinity are not JSON (RFC 8259), numbers that do not
    fit a double or 4000 digits are refused rather than turned into ``inf``, and nesting is
    limited, so everything accepted can be recorded and listed again as valid JSON.
    """
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")  # JSON between systems is UTF-8 (RFC 8259), no BOM
    except UnicodeDecodeError as exc:
        return InvalidJSON(f"body is not UTF-8 text (byte {exc.start})")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float,
                           parse_int=_parse_int)
    except RecursionError:
        return InvalidJSON(f"body nests deeper than {MAX_DEPTH} levels")
    except ValueError as exc:
        reason = str(exc)
        if isinstance(exc, json.JSONDecodeError):
            reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        return InvalidJSON(f"body is not valid JSON: {reason}")
    if _depth(value) > MAX_DEPTH:
        return InvalidJSON(f"body nests deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((child, depth + 1) for child in item)
    return deepest
