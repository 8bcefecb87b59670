"""``cloudchat api``: build a request from flags, send it through the shared client."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudchat_cli.core.errors import UsageError

if TYPE_CHECKING:
    from cloudchat_cli.core.http import ApiClient, Response

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_INPUT = 16 * 1024 * 1024


@dataclass
class RawRequest:
    method: str
    path: str
    params: dict[str, str] | None = None
    json_body: Any = None
    content: bytes | None = None


def check_path(path: str) -> str:
    """A path relative to base_url; never another host (the API key would go with it)."""
    cleaned = path.strip()
    if "://" in cleaned or cleaned.startswith("//") or any(c in cleaned for c in "\r\n\t "):
        raise UsageError(f"path {cleaned[:60]!r} must be relative to base_url, like messages",
                         hint="the API key is only ever sent to base_url")
    if ".." in cleaned.split("/"):
        raise UsageError("path may not contain '..'")
    return cleaned.lstrip("/")


def _pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"{flag} {item!r} is not key=value")
    return key.strip(), value


def _typed(value: str) -> Any:
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {value[1:]}: {exc}") from None
    try:
        return json.loads(value)
    except ValueError:
        return value


def build_request(method: str, path: str, fields: list[str], typed: list[str],
                  input_file: str | None) -> RawRequest:
    method = method.upper()
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}: use {', '.join(METHODS)}")
    request = RawRequest(method, check_path(path))
    values: dict[str, Any] = {}
    for item in fields:
        key, value = _pair(item, "-f")
        values[key] = value
    for item in typed:
        key, value = _pair(item, "-F")
        values[key] = _typed(value)
    if input_file is not None:
        if values:
            raise UsageError("give --input or -f/-F fields, not both")
        data = sys.stdin.buffer.read(MAX_INPUT) if input_file == "-" else _read(input_file)
        request.content = data
        return request
    if values:
        if method in ("GET", "DELETE"):
            request.params = {k: v if isinstance(v, str) else json.dumps(v)
                              for k, v in values.items()}
        else:
            request.json_body = values
    return request


def _read(name: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None


def send(client: ApiClient, request: RawRequest, *, wait: bool = True) -> Response:
    return client.request(request.method, request.path, json_body=request.json_body,
                          content=request.content, params=request.params, wait=wait)
