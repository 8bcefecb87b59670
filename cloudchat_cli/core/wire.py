"""HTTP/1.1 for the API client over the standard library's ``http.client``, as an httpx transport.

Why: httpx's default transport imports httpcore and h11 on first use, a sizeable share of
every ``cloudchat send`` (bench/HISTORY.md has the measurement). ``http.client`` is already in
memory by then — httpx imports it — and the API client needs nothing more than it offers:
HTTP/1.1, TLS, keep-alive. httpx stays the client API above it: requests, headers, timeouts,
content decoding, proxies from the environment (a proxied URL is routed by httpx to its own
transport), and ``MockTransport`` in unit tests. ``CLOUDCHAT_TRANSPORT=httpx`` replaces this
transport with httpx's own (core/http.py, ``choose_transport``); the contract tests run on both.

What this layer owns, and what the tests check against a real socket:

* errors become the httpx exceptions the client already tells apart: nothing was sent
  (``ConnectError``/``ConnectTimeout``) versus the request went out and the answer did not come
  back (``ReadTimeout``, ``RemoteProtocolError``, ``ReadError``), which is "outcome unknown";
* a pooled connection the server has closed is noticed *before* it is reused, so an idle
  keep-alive timeout on the server never turns a new request into "outcome unknown";
* thread-safe: broadcast threads share one client; each connection serves one request at a
  time, and at most ``max_idle`` idle connections are kept per host;
* a total deadline (the ``DEADLINE`` request extension): connect, sending, the status line, the
  headers and the body together end by then. ``http.client``'s socket timeout bounds each
  ``recv`` alone, so a server dripping one byte a second would otherwise hold us forever.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}
DEADLINE = "cloudchat.deadline"  # request extension: time.monotonic() by which it must be over
Origin = tuple[str, str, int]


class StdlibTransport(httpx.BaseTransport):
    def __init__(self, *, max_idle: int = 5, ssl_context: ssl.SSLContext | None = None):
        self.max_idle = max_idle
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    # --- connections ----------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:  # the CA bundle is loaded only for the first https URL
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def _checkout(self, origin: Origin) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                conn = idle.pop()
                if _still_open(conn):
                    return conn
                conn.close()
        return None

    def _checkin(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, origin: Origin, timeout: float | None,
                 deadline: float | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.timeout = _within(timeout, deadline)
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake or certificate
            conn.close()
            raise httpx.ConnectError(_os_reason(exc)) from exc
        return conn

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    # --- one exchange ---------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
        timeouts = request.extensions.get("timeout", {})
        deadline = request.extensions.get(DEADLINE)
        body = request.read()
        conn = self._checkout(origin) or self._connect(origin, timeouts.get("connect"), deadline)
        conn.response_class = _response_class(deadline)
        try:
            conn.sock.settimeout(_within(timeouts.get("write"), deadline))
            conn.putrequest(request.method, url.raw_path.decode("ascii"), skip_host=True,
                            skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)
            conn.endheaders(body or None)  # headers and a small body leave in one segment
        except TimeoutError as exc:
            conn.close()
            raise httpx.WriteTimeout("timed out sending the request") from exc
        except OSError as exc:
            conn.close()
            raise httpx.WriteError(_os_reason(exc)) from exc
        except (ValueError, http.client.HTTPException) as exc:  # e.g. a newline in a header
            conn.close()
            raise httpx.LocalProtocolError(f"cannot send this request: {exc}") from exc
        try:
            conn.sock.settimeout(_within(timeouts.get("read"), deadline))
            response = conn.getresponse()
        except BaseException as exc:
            conn.close()
            error = _read_error(exc)
            if error is None:
                raise
            raise error from exc
        return httpx.Response(
            response.status,
            # http.client decoded the header bytes as latin-1: hand httpx the exact bytes
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.msg.items()],
            stream=_Body(self, origin, conn, response),
            extensions={"http_version": b"HTTP/1.1" if response.version == 11 else b"HTTP/1.0",
                        "reason_phrase": response.reason.encode("latin-1", "replace")},
        )


class _Body(httpx.SyncByteStream):
    """The response body, read as httpx asks; the connection goes back to the pool at the end."""

    def __init__(self, transport: StdlibTransport, origin: Origin,
                 conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._transport = transport
        self._origin = origin
        self._conn: http.client.HTTPConnection | None = conn
        self._response = response
        self._complete = False  # the body was read to its end: the connection can be reused

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        try:
            while chunk := response.read1(65536):
                yield chunk
            if response.length:  # read1() reports a premature EOF as the end of the body
                raise http.client.IncompleteRead(b"", response.length)
        except BaseException as exc:  # including GeneratorExit: the reader stopped early
            self.close()  # not complete: the connection is closed, not reused
            error = _read_error(exc)
            if error is None:
                raise
            raise error from exc
        self._complete = True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        reusable = self._complete and not self._response.will_close
        self._response.close()  # its buffered reader only; the socket is the connection's
        if reusable:
            self._transport._checkin(self._origin, conn)
        else:
            conn.close()


def _within(timeout: float | None, deadline: float | None) -> float | None:
    """``timeout``, shortened to what is left before ``deadline``; past it, raise TimeoutError."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineReader(io.RawIOBase):
    """The socket as ``http.client`` reads a response: each ``recv`` gets only the time left.

    It reads through the socket's own ``SocketIO`` (``makefile``), which holds a reference on
    the descriptor: ``http.client`` closes the connection's socket as soon as it has read the
    head of an answer that ends with the connection (HTTP/1.0, ``Connection: close``), and the
    body must still be readable after that, as it is with the plain ``HTTPResponse``.
    """

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        self._sock.settimeout(_within(self._timeout, self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``HTTPResponse`` is given instead of the socket: only ``makefile`` is used."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str, *args: object, **kw: object) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


def _response_class(deadline: float | None) -> type[http.client.HTTPResponse]:
    if deadline is None:
        return http.client.HTTPResponse

    class DeadlineResponse(http.client.HTTPResponse):
        def __init__(self, sock, *args, **kw):
            super().__init__(_DeadlineSocket(sock, deadline), *args, **kw)

    return DeadlineResponse


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is reusable only while it has nothing to read: readable means the
    server closed it (EOF, TLS close_notify) or sent something nobody asked for."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


def _read_error(exc: BaseException) -> httpx.TransportError | None:
    """The httpx exception for a failure after the request went out (outcome unknown)."""
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout("timed out waiting for the response")
    if isinstance(exc, http.client.RemoteDisconnected):
        return httpx.RemoteProtocolError("server disconnected without sending a response")
    if isinstance(exc, http.client.IncompleteRead):
        return httpx.RemoteProtocolError("connection closed before the end of the response body")
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(f"malformed response: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        return httpx.ReadError(_os_reason(exc))
    return None  # KeyboardInterrupt, GeneratorExit and the like: not ours to translate


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message or exc}"
    return exc.strerror or str(exc) or type(exc).__name__
