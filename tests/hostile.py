"""A hostile HTTP server for tests: a real socket on 127.0.0.1 that misbehaves on purpose.

Our sandbox is polite; the world is not. This server reads each request completely, records it
(the ground truth of what reached "the API": ``requests``, ``per_recipient()``), then answers in
the chosen ``mode``::

    with HostileServer("redirect") as api:
        proc = run_cli("send", "6281234567890", "hi", env={..., **api.env()})
        assert api.per_recipient() == {"6281234567890": 1}

``mode`` may be a list: request *n* gets ``mode[n]`` and the last one repeats (``["429", "ok"]``).
It can also be changed between runs (``api.mode = "ok"``). Dripping modes send one byte per
``drip`` seconds for as long as the client stays connected — they never end on their own, so
only a client-side deadline gets the client out.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

MODES = (
    "ok",             # 201 with a message object {"id": "msg_N", "status": "queued", ...}
    "redirect",       # 301 to https:// (what an http:// base URL meets in the wild)
    "html-200",       # 200 text/html: a captive portal or a proxy's page
    "truncated-200",  # 200 application/json whose (complete) body is cut-off JSON
    "204",            # 204 No Content
    "array-200",      # 200 with a JSON array
    "slow-status",    # the status line, one byte at a time, never finished
    "slow-headers",   # a status line, then one header line one byte at a time, never finished
    "slow-body",      # status and headers at once, then the body one byte at a time
    "reset-mid-body",  # half a body, then a TCP reset
    "retry-after",    # 429 with Retry-After: retry_after (a day by default)
    "429",            # 429 with Retry-After: 1
    "500",            # 500 with a JSON error body
    "escapes",        # 201 whose id, status and to hold terminal escapes and non-strings
)


@dataclass
class Recorded:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class HostileServer:
    """A threaded TCP server speaking just enough HTTP/1.1 to misbehave convincingly."""

    def __init__(self, mode: str | list[str] = "ok", *, drip: float = 0.05,
                 retry_after: str = "86400", location: str | None = None):
        self.mode = mode
        self.drip = drip
        self.retry_after = retry_after
        self.location = location
        self.requests: list[Recorded] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    # --- for tests -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/public/v1"

    def env(self, key: str = "sk_test_hostile_0123456789abcdef", **extra: str) -> dict[str, str]:
        """Environment variables pointing the CLI here, with no retries unless overridden."""
        return {"CLOUDCHAT_BASE_URL": self.base_url, "CLOUDCHAT_API_KEY": key,
                "CLOUDCHAT_MAX_RETRIES": "0", "CLOUDCHAT_RATE_MARGIN": "0", **extra}

    def per_recipient(self) -> Counter:
        """How many requests reached the server for each ``to`` — the ground truth."""
        with self._lock:
            bodies = [r.json() for r in self.requests]
        return Counter(b.get("to") for b in bodies if isinstance(b, dict))

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving -------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self._stopped.is_set():
                request = _read_request(conn, buf)
                if request is None:
                    return
                with self._lock:
                    number = len(self.requests)
                    self.requests.append(request)
                if not self._answer(conn, self._mode_for(number), number, request):
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def _mode_for(self, number: int) -> str:
        mode = self.mode
        if isinstance(mode, str):
            return mode
        return mode[min(number, len(mode) - 1)]

    def _answer(self, conn: socket.socket, mode: str, number: int, request: Recorded) -> bool:
        """Answer one request; True when the connection may serve another."""
        handlers: dict[str, Callable[[socket.socket, int, Recorded], bool]] = {
            "ok": self._ok, "redirect": self._redirect, "html-200": self._html_200,
            "truncated-200": self._truncated_200, "204": self._no_content,
            "array-200": self._array_200, "slow-status": self._slow_status,
            "slow-headers": self._slow_headers, "slow-body": self._slow_body,
            "reset-mid-body": self._reset_mid_body, "retry-after": self._retry_after,
            "429": self._too_many, "500": self._server_error, "escapes": self._escapes,
        }
        return handlers[mode](conn, number, request)

    # each mode ------------------------------------------------------------------------------

    def _ok(self, conn, number, request) -> bool:
        sent = request.json() if isinstance(request.json(), dict) else {}
        body = json.dumps({"id": f"msg_{number + 1:06d}", "status": "queued",
                           "channel": sent.get("channel", "whatsapp"),
                           "to": sent.get("to", "")}).encode()
        return _reply(conn, "201 Created", body)

    def _redirect(self, conn, number, request) -> bool:
        location = self.location or f"https://127.0.0.1:{self.port}{request.target}"
        return _reply(conn, "301 Moved Permanently", b"<html>Moved</html>", "text/html",
                      extra=f"Location: {location}\r\n")

    def _html_200(self, conn, number, request) -> bool:
        return _reply(conn, "200 OK", b"<html><body>Sign in to the Wi-Fi</body></html>",
                      "text/html")

    def _truncated_200(self, conn, number, request) -> bool:
        return _reply(conn, "200 OK", b'{"id": "msg_000001", "stat')

    def _no_content(self, conn, number, request) -> bool:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    def _array_200(self, conn, number, request) -> bool:
        return _reply(conn, "200 OK", b'[{"id": "msg_000001"}]')

    def _slow_status(self, conn, number, request) -> bool:
        self._drip_forever(conn, b"HTTP/1.1 201 Created", b" ")
        return False

    def _slow_headers(self, conn, number, request) -> bool:
        conn.sendall(b"HTTP/1.1 201 Created\r\n")
        self._drip_forever(conn, b"X-Drip: ", b"a")
        return False

    def _slow_body(self, conn, number, request) -> bool:
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000\r\n\r\n")
        self._drip_forever(conn, b'{"id": "msg_000001", "pad": "', b"a")
        return False

    def _reset_mid_body(self, conn, number, request) -> bool:
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"id\": \"msg_0")
        # SO_LINGER with a zero timeout: close() sends a RST instead of a FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def _retry_after(self, conn, number, request) -> bool:
        body = b'{"error": {"code": 429, "type": "rate_limited", "message": "slow down"}}'
        return _reply(conn, "429 Too Many Requests", body,
                      extra=f"Retry-After: {self.retry_after}\r\n")

    def _too_many(self, conn, number, request) -> bool:
        body = b'{"error": {"code": 429, "type": "rate_limited", "message": "slow down"}}'
        return _reply(conn, "429 Too Many Requests", body, extra="Retry-After: 1\r\n")

    def _server_error(self, conn, number, request) -> bool:
        body = b'{"error": {"code": 500, "type": "server_error", "message": "oops"}}'
        return _reply(conn, "500 Internal Server Error", body)

    def _escapes(self, conn, number, request) -> bool:
        body = json.dumps({"id": "msg_\x1b[31mRED\x1b[0m", "status": {"state": "queued"},
                           "to": "\x1b]0;owned\x07\u009b2J", "channel": ["whatsapp"]})
        return _reply(conn, "201 Created", body.encode())

    def _drip_forever(self, conn: socket.socket, start: bytes, byte: bytes) -> None:
        conn.sendall(start)
        while not self._stopped.wait(self.drip):
            conn.sendall(byte)  # raises once the client has gone: the drip ends with it


def _reply(conn: socket.socket, status: str, body: bytes, ctype: str = "application/json",
           extra: str = "") -> bool:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode("latin-1")
    conn.sendall(head + body)
    return True


def _read_request(conn: socket.socket, buf: bytearray) -> Recorded | None:
    """One request (headers and a Content-Length body); None when the client closed."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None
        rest += data
    buf[:] = rest[length:]
    return Recorded(method, target, headers, rest[:length])
