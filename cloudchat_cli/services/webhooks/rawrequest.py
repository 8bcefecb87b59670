"""HTTP/1.1 requests as the listener and ``verify --request`` see them, parsed by h11.

One parser for both: the listener's front end feeds h11 from its sockets, ``parse_raw_request``
feeds it a captured request (proxy dump, ``nc`` or ``tcpdump`` output) read from a file. Either
way framing is strict: one Content-Length of digits only, chunk sizes in hex, ``chunked`` the
only transfer coding; what h11 refuses is a clear error, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import h11

from cloudchat_cli.core.errorbody import one_line
from cloudchat_cli.core.errors import UsageError

SIGNATURE_HEADER = b"x-cloudchat-signature"
MAX_HEAD = 64 * 1024


class RawRequestError(UsageError):
    """The file is not a usable HTTP request."""


@dataclass
class RequestHead:
    """What the request line and headers say, in the forms the webhook code uses."""

    method: str
    target: str
    headers: dict[str, str]  # lower-cased names; a repeated header's values joined by ", "
    signatures: int  # how many X-CloudChat-Signature headers (more than one is refused)
    length: int | None  # Content-Length, when the body is not chunked
    chunked: bool
    framing_conflict: bool  # both Content-Length and Transfer-Encoding (a smuggling vector)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def head_of(request: h11.Request) -> RequestHead:
    """Our view of a request h11 has parsed (names are already lower-case there)."""
    headers: dict[str, str] = {}
    signatures = 0
    for name, value in request.headers:
        if name == SIGNATURE_HEADER:
            signatures += 1
        key = name.decode("ascii")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    chunked = "transfer-encoding" in headers
    length = None
    if not chunked and "content-length" in headers:
        # h11 has checked it: digits only, and repeated copies all equal
        length = int(headers["content-length"].split(",")[0])
    return RequestHead(request.method.decode("ascii"), request.target.decode("ascii"), headers,
                       signatures, length, chunked,
                       chunked and "content-length" in headers)


@dataclass
class RawRequest:
    head: RequestHead
    body: bytes

    @property
    def method(self) -> str:
        return self.head.method

    @property
    def headers(self) -> dict[str, str]:
        return self.head.headers

    def header(self, name: str) -> str | None:
        return self.head.header(name)


def parse_raw_request(data: bytes) -> RawRequest:
    """The first request in ``data`` with its decoded body; ``RawRequestError`` on junk.

    Bytes after the body (a second, pipelined request) are ignored.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(data)
    conn.receive_data(b"")  # the file ends here: a cut-short request is an error, not a wait
    head: RequestHead | None = None
    parts: list[bytes] = []
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise RawRequestError(_explain(exc, data)) from None
        if isinstance(event, h11.Request):
            head = head_of(event)
            if head.framing_conflict:
                raise RawRequestError("both Transfer-Encoding and Content-Length: the body's "
                                      "length is ambiguous")
        elif isinstance(event, h11.Data):
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return RawRequest(head, b"".join(parts))
        else:  # ConnectionClosed before a request, or NEED_DATA/PAUSED (cannot happen at EOF)
            raise RawRequestError("no HTTP request in the file (request line, headers, a blank "
                                  "line, then the body)")


_BYTES = re.compile(r"bytearray\(b'(.*?)'\)|b'(.*?)'")


def describe(exc: h11.RemoteProtocolError) -> str:
    """h11's complaint as one short line (its byte reprs shown as plain quoted text)."""
    text = _BYTES.sub(lambda m: repr(m.group(1) or m.group(2) or ""), str(exc))
    return one_line(f"malformed request: {text}", 160)


def _explain(exc: h11.RemoteProtocolError, data: bytes) -> str:
    """``describe``, plus the likely cause when a capture file ends before the request does."""
    message = str(exc)
    if "closed connection" not in message:
        return describe(exc)
    if "message body" in message:  # h11 says how much it got and expected
        what = f"the body is truncated ({message.split('(', 1)[-1].rstrip(')')})"
    else:
        what = "the headers never end (no blank line after them)"
    if b"chunked" in data.lower() and b"\r\n" not in data.split(b"\n\n", 1)[-1]:
        what = "the chunked body is truncated (chunk size lines must end in CRLF)"
    return f"malformed request: {what}"
