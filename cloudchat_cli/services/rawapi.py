"""``cloudchat api``: build a request from flags, send it through the shared client."""

from __future__ import annotations

import json
import math
import re
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
    headers: dict[str, str] | None = None


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by cloudchat or the HTTP client; a second value would be ambiguous or leak the key.
RESERVED_HEADERS = {"authorization", "proxy-authorization", "host", "content-length",
                    "transfer-encoding", "connection", "te", "upgrade", "trailer", "keep-alive"}


def check_path(path: str) -> str:
    """A path relative to base_url; never another host (the API key would go with it).

    Anything a URL parser could read as a scheme or a host — ``http:host:1/x``,
    ``localhost:1/x``, ``//host``, ``user@host``, a backslash — is refused, not rewritten."""
    cleaned = path.strip()
    first = cleaned.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    if ("://" in cleaned or cleaned.startswith("//") or _SCHEME.match(cleaned)
            or ":" in first or "@" in first or "\\" in cleaned
            or any(c in cleaned for c in "\r\n\t ")):
        raise UsageError(
            f"path {cleaned[:60]!r} looks like a URL or host:port; give a path relative to "
            "base_url, like messages",
            hint="the API key is only ever sent to base_url (`cloudchat config set base_url "
            "URL` to change it)")
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
def method_and_path(args: list[str], method: str | None, has_body: bool) -> tuple[str, str]:
    """``METHOD PATH`` or ``PATH`` with ``-X METHOD`` (default GET, or POST with fields or
    --input, as ``gh api`` does)."""
    if len(args) == 2:
        if method is not None and method.upper() != args[0].upper():
            raise UsageError(f"two methods given: {args[0]} and -X {method}")
        return args[0], args[1]
    if len(args) != 1:
        raise UsageError("give [METHOD] PATH, e.g. `cloudchat api GET messages/msg_123`")
    if args[0].upper() in METHODS and method is None:
        raise UsageError(f"missing PATH after {args[0]}")
    return method or ("POST" if has_body else "GET"), args[0]


def parse_headers(items: list[str]) -> dict[str, str]:
    """``-H key:value`` pairs; Authorization and framing headers are refused."""
    headers: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _TOKEN.match(key):
            raise UsageError(f"-H {item[:60]!r} is not key:value")
        if any(c in value for c in "\r\n\x00"):
            raise UsageError(f"-H {key}: the value contains a line break or NUL")
        if key.lower() in ("authorization", "proxy-authorization"):
            raise UsageError(f"-H {key} is refused: cloudchat sends the API key itself",
                             hint="the key comes from --api-key-file, CLOUDCHAT_API_KEY or the "
                             "keyring; a key in argv would show in `ps` and shell history")
        if key.lower() in RESERVED_HEADERS:
            raise UsageError(f"-H {key} is set by the HTTP client and cannot be given")
        headers[key] = value
    return headers


def build_request(method: str, path: str, fields: list[str], typed: list[str],
                  input_file: str | None, headers: list[str] | None = None) -> RawRequest:
    method = method.upper()
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}: use {', '.join(METHODS)}")
    request = RawRequest(method, check_path(path), headers=parse_headers(headers or []))
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
    from cloudchat_cli.core import environment

    data = environment.current().stdin.buffer.read(MAX_INPUT + 1)  # the invocation's stdin
    if len(data) > MAX_INPUT:
        raise UsageError(f"--input -: stdin is too long (more than {MAX_INPUT // 1024 // 1024} "
                         "MiB)")
    return data


def send(client: ApiClient, request: RawRequest, *, wait: bool = True) -> Response:
    return client.request(request.method, request.path, json_body=request.json_body,
                          content=request.content, params=request.params, wait=wait,
                          headers=request.headers)


def status_line(status: int) -> str:
    from http import HTTPStatus

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return f"HTTP/1.1 {status} {reason}".rstrip()


def error_body_json(status: int, body: bytes) -> bytes:
    """An error response's body as JSON: as it came when it is JSON, else wrapped."""
    try:
        json.loads(body)
        return body
    except ValueError:
        from cloudchat_cli.core.errorbody import one_line

        text = one_line(body.decode("utf-8", "replace"), 2000)
        return json.dumps({"error": {"status": status, "body": text}},
                          ensure_ascii=False).encode()
