"""``cloudchat api``: build a request from flags, send it through the shared client."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.core.files import read_limited

if TYPE_CHECKING:
    from cloudchat_cli.core.http import ApiClient, Response

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_INPUT = 16 * 1024 * 1024
PIPE_HINT = "to send what a command prints, pipe it to --input -"


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


def _typed(key: str, value: str) -> Any:
    if value.startswith("@"):
        data = read_limited(value[1:], MAX_INPUT, f"file for -F {key}", hint=PIPE_HINT)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"-F {key}=@{value[1:]}: the file is not UTF-8 text "
                             f"(byte {exc.start})") from None
    try:
        return json.loads(value, parse_constant=_no_constant, parse_float=_finite)
    except _NotFinite:
        raise UsageError(f"-F {key}={value[:40]}: not a finite number (JSON has no NaN or "
                         "Infinity)", hint="use -f to send it as a string") from None
    except ValueError:
        return value


class _NotFinite(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999
        raise _NotFinite(text)
    return number


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
        values[key] = _typed(key, value)
    if input_file is not None:
        if values:
            raise UsageError("give --input or -f/-F fields, not both")
        request.content = _stdin() if input_file == "-" else _read(input_file)
        return request
    if values:
        if method in ("GET", "DELETE"):
            request.params = {k: v if isinstance(v, str) else json.dumps(v)
                              for k, v in values.items()}
        else:
            request.json_body = values
    return request


def _read(name: str) -> bytes:
    return read_limited(name, MAX_INPUT, "--input file", hint=PIPE_HINT)


def _stdin() -> bytes:
    data = sys.stdin.buffer.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise UsageError(f"--input -: stdin is too long (more than {MAX_INPUT // 1024 // 1024} "
                         "MiB)")
    return data


def send(client: ApiClient, request: RawRequest, *, wait: bool = True) -> Response:
    return client.request(request.method, request.path, json_body=request.json_body,
                          content=request.content, params=request.params, wait=wait)
