"""Parse a captured raw HTTP request (proxy dump, ``nc`` or ``tcpdump`` output) into headers
and the exact body bytes: by Content-Length, or by decoding chunked transfer encoding."""

from __future__ import annotations

from dataclasses import dataclass

from cloudchat_cli.core.errors import UsageError

MAX_HEADERS = 200


class RawRequestError(UsageError):
    """The file is not a usable HTTP request."""


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names; the last value of a repeated header wins
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split at the first blank line, whichever line-break style the capture used."""
    found = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) != -1]
    if not found:
        raise RawRequestError("no blank line between the headers and the body")
    index, size = min(found)
    return data[:index], data[index + size:]


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end == -1:
            raise RawRequestError("chunked body is truncated (no chunk size line)")
        size_text = data[pos:end].strip().split(b";", 1)[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise RawRequestError(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise RawRequestError("negative chunk size")
        pos = end + 1
        if size == 0:
            return bytes(out)
        if pos + size > len(data):
            raise RawRequestError("chunked body is truncated")
        out += data[pos:pos + size]
        pos += size
        if data[pos:pos + 2] == b"\r\n":
            pos += 2
        elif data[pos:pos + 1] == b"\n":
            pos += 1
        else:
            raise RawRequestError("chunk is not followed by a line break")


def parse_raw_request(data: bytes) -> RawRequest:
    """Parse request line, headers, blank line, body; raise ``RawRequestError`` on junk."""
    head, rest = _split_head(data)
    try:
        text = head.decode("iso-8859-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise RawRequestError("headers are not text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    request_line = lines[0].strip()
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise RawRequestError(f"first line is not an HTTP request line: {request_line[:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise RawRequestError(f"malformed header line: {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
        if len(headers) > MAX_HEADERS:
            raise RawRequestError("too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(rest)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise RawRequestError("Content-Length is not a number") from None
        if length < 0:
            raise RawRequestError("Content-Length is negative")
        if len(rest) < length:
            raise RawRequestError(
                f"body is truncated: Content-Length {length}, only {len(rest)} bytes present")
        body = rest[:length]
    else:
        body = rest
    return RawRequest(parts[0], parts[1], headers, body)
