"""The sandbox's HTTP/1.1 server: h11 for the framing, a thread per connection.

h11 (already installed with httpx) does the parsing a real API server needs and ``http.server``
does not: chunked request bodies, strict Content-Length and chunk-size grammar, keep-alive and
pipelining, ``Expect: 100-continue`` bookkeeping. This module adds what h11 leaves to the
server: bare-LF heads are refused (RFC 9112 allows a strict recipient to refuse them; a client
sending them has a bug the sandbox should show), a request with both Content-Length and
Transfer-Encoding is refused (a smuggling shape), body size is limited while reading, and every
framing problem gets a JSON error answer and a close, never a silent hang-up or a traceback.

It is deliberately separate from ``webhook listen``'s front end: client-side code and the
emulator must not share bugs.
"""

from __future__ import annotations

import contextlib
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import h11

MAX_BODY = 1024 * 1024
MAX_HEAD = 16 * 1024
IDLE_TIMEOUT = 60.0  # a keep-alive connection with no new request is closed after this
LINGER = 2.0  # after an error answer, unread request bytes are drained this long (no RST)
SERVER = "CloudChatSandbox/1"

_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    conn: int  # serial number of the TCP connection, for the record
    http_version: str = "1.1"
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False


class FramingError(Exception):
    """The request cannot be read as HTTP/1.1: answered with ``status`` and a close."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class _ClientGone(Exception):
    pass


class App:
    """What the HTTP layer calls; the sandbox's routes implement it."""

    def before_body(self, request: Request) -> Response | None:
        """A final answer from the headers alone (``Expect: 100-continue``), or None for 100."""
        return None

    def handle(self, request: Request) -> Response | None:
        """The answer to a whole request; None hangs up without answering."""
        raise NotImplementedError

    def framing_error(self, error: FramingError, request: Request | None, conn: int) -> Response:
        raise NotImplementedError

    def internal_error(self, error: Exception, request: Request) -> Response:
        """The answer when ``handle`` raised: a bug, but the client still gets an answer."""
        raise NotImplementedError


_REASONS = {100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
            417: "Expectation Failed", 429: "Too Many Requests",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 505: "HTTP Version Not Supported"}


def _date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


class Connection:
    """One client connection: read requests, answer them in order, until either side closes."""

    def __init__(self, sock: socket.socket, app: App, number: int):
        self.sock = sock
        self.app = app
        self.number = number
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.request: Request | None = None

    # --- reading ---------------------------------------------------------------------------

    def _check_head(self) -> None:
        """Refuse an oversized head, or a bare LF in it (h11 tolerates one), before parsing."""
        if self.h11.their_state is not h11.IDLE:
            return
        buffered = self.h11.trailing_data[0]
        end = buffered.find(b"\r\n\r\n")
        region = buffered if end < 0 else buffered[:end + 4]
        if len(region) > MAX_HEAD:  # h11 limits only heads that arrive in several reads
            raise FramingError(431, "request_header_fields_too_large",
                               f"request head larger than {MAX_HEAD} bytes")
        if _BARE_LF.search(region):
            raise FramingError(400, "bad_request", "line ending without CR (bare LF) in the "
                               "request head; HTTP/1.1 lines end with CRLF")

    def _next_event(self) -> Any:
        while True:
            self._check_head()
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise _framing(exc) from None
            if event is not h11.NEED_DATA:
                return event
            if self.h11.they_are_waiting_for_100_continue:
                self._write(self.h11.send(h11.InformationalResponse(
                    status_code=100, headers=[], reason=b"Continue")))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
                    raise _ClientGone from None
                raise FramingError(408, "request_timeout", "the request was not completed "
                                   f"within {IDLE_TIMEOUT:g} s") from None
            except OSError:
                raise _ClientGone from None
            self.h11.receive_data(data)

    def _read_head(self) -> Request | None:
        event = self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request)
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("ascii").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.request = Request(event.method.decode("ascii"), event.target.decode("latin-1"),
                               headers, self.number, event.http_version.decode("ascii"))
        if event.http_version != b"1.1" and event.http_version != b"1.0":
            raise FramingError(505, "http_version_not_supported",
                               f"HTTP/{event.http_version.decode()} is not supported; use HTTP/1.1")
        if "transfer-encoding" in headers and "content-length" in headers:
            raise FramingError(400, "bad_request", "both Content-Length and Transfer-Encoding: "
                               "send one of them")
        length = headers.get("content-length")
        if length is not None and int(length) > MAX_BODY:
            raise FramingError(413, "payload_too_large",
                               f"body too large: the limit is {MAX_BODY} bytes")
        expect = headers.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            raise FramingError(417, "expectation_failed",
                               f"unsupported expectation {expect!r}; only 100-continue is known")
        return self.request

    def _read_body(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise FramingError(413, "payload_too_large",
                                       f"body too large: the limit is {MAX_BODY} bytes")
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:  # ConnectionClosed mid-body: nobody left to answer
                raise _ClientGone

    # --- writing ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            raise _ClientGone from None

    def _respond(self, response: Response, method: str) -> None:
        headers = [("Content-Type", "application/json"),
                   ("Content-Length", str(len(response.body))),
                   ("Date", _date()), ("Server", SERVER), *response.headers.items()]
        if response.close:
            headers.append(("Connection", "close"))
        event = h11.Response(status_code=response.status, headers=headers,
                             reason=_REASONS.get(response.status, "").encode())
        data = self.h11.send(event)
        if method != "HEAD":  # h11 frames a HEAD answer as empty: headers only
            data += self.h11.send(h11.Data(data=response.body))
        data += self.h11.send(h11.EndOfMessage())
        self._write(data)  # one write: no Nagle/delayed-ACK stall between head and body

    def _respond_raw(self, response: Response, method: str | None) -> None:
        """An answer after h11 gave up on the request: written by hand, always with a close."""
        lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}",
                 "Content-Type: application/json", f"Content-Length: {len(response.body)}",
                 f"Date: {_date()}", f"Server: {SERVER}", "Connection: close",
                 *(f"{k}: {v}" for k, v in response.headers.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._write(head + (b"" if method == "HEAD" else response.body))

    # --- the loop --------------------------------------------------------------------------

    def serve(self) -> None:
        try:
            self._serve()
        except _ClientGone:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()

    def _serve(self) -> None:
        self.sock.settimeout(IDLE_TIMEOUT)
        while True:
            self.request = None
            try:
                if not self._cycle():
                    return
            except FramingError as exc:
                answer = self.app.framing_error(exc, self.request, self.number)
                self._respond_raw(answer, self.request.method if self.request else None)
                self._linger()
                return
            if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is not h11.DONE:
                # Connection: close, HTTP/1.0, or answered before the body was read: the
                # client may have sent more than was read, which a plain close would reset.
                self._linger()
                return
            self.h11.start_next_cycle()

    def _cycle(self) -> bool:
        """Serve one request; False when the connection is to be closed without an answer."""
        request = self._read_head()
        if request is None:
            return False
        if self.h11.they_are_waiting_for_100_continue:
            early = self._call(self.app.before_body, request)
            if early is not None:  # refused from the headers: the body is never asked for
                early.close = True
                self._respond(early, request.method)
                return True
        request.body = self._read_body()
        answer = self._call(self.app.handle, request)
        if answer is None:  # --drop-rate: the request was read, the answer never comes
            return False
        self._respond(answer, request.method)
        return True

    def _call(self, handler: Any, request: Request) -> Response | None:
        try:
            return handler(request)
        except Exception as exc:  # a sandbox bug must not look like a network failure
            answer = self.app.internal_error(exc, request)
            answer.close = True
            return answer

    def _linger(self) -> None:
        """Close without a reset: stop writing, then drain what the client is still sending.

        Closing a socket with unread input makes the kernel send RST, which can destroy the
        answer before the client reads it (a 413 to a client still uploading, for one).
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return
        except OSError:
            return


def _framing(exc: h11.RemoteProtocolError) -> FramingError:
    status = exc.error_status_hint
    message = str(exc) or "malformed request"
    if status == 431:
        message = f"request head larger than {MAX_HEAD} bytes"
        return FramingError(431, "request_header_fields_too_large", message)
    if status == 501:
        return FramingError(501, "not_implemented", message)
    return FramingError(400, "bad_request", f"malformed HTTP/1.1 request: {message}")


class _Handler(socketserver.BaseRequestHandler):
    server: ThreadedServer

    def handle(self) -> None:
        sock = self.request
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Connection(sock, self.server.app, self.server.next_conn()).serve()


class ThreadedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._conns = 0
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def next_conn(self) -> int:
        with self._conns_lock:
            self._conns += 1
            return self._conns

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Everything expected is handled in Connection; stay quiet like a daemon would.
        pass


def serve(address: tuple[str, int], app: App) -> ThreadedServer:
    """A bound, listening server; call ``serve_forever`` on it."""
    return ThreadedServer(address, app)
