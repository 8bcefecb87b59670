"""One HTTP exchange within a total deadline: connect, status line, headers and body together.

A socket timeout bounds each read alone, so a server that drips one byte a second (or a proxy,
or a captive portal) holds a request open for as long as it likes. Two mechanisms, one per kind
of transport, so the bound holds whichever one httpx routes the request through:

* our own transport (``core/wire.py``) reads the ``DEADLINE`` request extension and gives each
  ``recv`` only the time left;
* httpx's transport (used behind a proxy, and for webhook deliveries) reports each new
  connection through the public ``trace`` extension; a timer shuts that socket down at the
  deadline, which ends any read in progress. The client using it must not keep connections
  alive (``NO_KEEPALIVE``): a reused connection is not reported, so it could not be watched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from cloudchat_cli.core.wire import DEADLINE

NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


@dataclass
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool


class _Watchdog:
    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False
        self._socks: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def trace(self, name: str, info: dict[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()),
                                              self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the blocked recv returns at once

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()


def exchange(http: httpx.Client, request: httpx.Request, seconds: float,
             max_body: int) -> Exchange:
    """Send ``request`` and read its answer (up to ``max_body`` bytes) within ``seconds``.

    Past the deadline this raises ``httpx.ReadTimeout`` (or ``ConnectTimeout`` when no
    connection was made), whichever transport carried the request.
    """
    deadline = time.monotonic() + seconds
    dog = _Watchdog(deadline)
    request.extensions[DEADLINE] = deadline
    request.extensions["trace"] = dog.trace
    try:
        raw = http.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            truncated = False
            for chunk in raw.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_body:  # a body of exactly max_body is whole
                    truncated = True
                    break
                if time.monotonic() > deadline:  # a transport that ignores both mechanisms
                    raise httpx.ReadTimeout("response body still arriving", request=request)
            return Exchange(raw.status_code, {k.lower(): v for k, v in raw.headers.items()},
                            b"".join(chunks)[:max_body], truncated)
        finally:
            raw.close()
    except httpx.TimeoutException:
        raise
    except httpx.TransportError as exc:
        if dog.fired:  # the watchdog cut the connection: that is the timeout, not the server
            raise httpx.ReadTimeout("no complete response before the deadline",
                                    request=request) from exc
        raise
    finally:
        dog.cancel()
