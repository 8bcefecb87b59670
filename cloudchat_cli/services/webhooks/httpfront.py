"""The listener's HTTP front end: asyncio for the sockets and the checks, one thread for saving.

``http.server`` starts a thread per connection; under 50 concurrent deliveries that, plus its
header parsing, capped the listener near 1,000 deliveries/s with a p99 acknowledgement of
55-65 ms (bench/listener.py). Here one event loop reads requests (a stalled client costs a
coroutine, not a thread) and verifies them; with ``--save`` the accepted events go to the
store's ``Flusher``, which writes and fsyncs them in batches and wakes the loop once per batch.
Nothing that can block on the disk runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloudchat_cli.services.webhooks.listener import Delivery, Listener
    from cloudchat_cli.services.webhooks.store import Flusher, PendingSave

MAX_HEADER_BYTES = 64 * 1024
CHECK_ON_LOOP = 64 * 1024  # bodies up to this size are verified on the loop (~30 us each)


class _Reject(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def bind(host: str, port: int) -> socket.socket:
    """Bind now (so 'port in use' is reported before anything starts) and listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class AsyncFront:
    """Serve ``listener`` on ``sock`` until SIGINT/SIGTERM; then finish what is in flight."""

    def __init__(self, listener: Listener, sock: socket.socket):
        self.listener = listener
        self.sock = sock
        self._flusher: Flusher | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stop: asyncio.Event | None = None

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def run(self) -> None:
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.getsignal(s) for s in signals}
        try:
            asyncio.run(self._main(signals))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def _main(self, signals: tuple[int, ...]) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.listener.store is not None:
            def saved(batch: list[PendingSave]) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is already gone
                    loop.call_soon_threadsafe(self._saved, batch)

            self._flusher = self.listener.store.flusher(saved)
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                loop.add_signal_handler(sig, self._stop.set)
        try:
            server = await asyncio.start_server(self._client, sock=self.sock,
                                                limit=MAX_HEADER_BYTES)
            async with server:
                await self._stop.wait()
                self.listener.on_notice("Stopping: finishing deliveries in flight…")
                server.close()
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            if self._flusher is not None:
                self._flusher.close()  # whatever was submitted is on disk before we return

    @staticmethod
    def _saved(batch: list[PendingSave]) -> None:
        for item in batch:
            future: asyncio.Future = item.token
            if not future.done():
                future.set_result(item.error)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        except _Reject as exc:
            self._report(exc.status, exc.reason)
            await self._answer(writer, exc.status, {"error": exc.reason})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    def _report(self, status: int, reason: str) -> None:
        from cloudchat_cli.services.webhooks.listener import Delivery

        self.listener.on_delivery(Delivery(time.time(), status, "rejected", reason))

    async def _read(self, awaitable, what: str):
        try:
            # asyncio.timeout, not wait_for: no extra task per read (~10 % of the loop's CPU)
            async with asyncio.timeout(self.listener.config.read_timeout):
                return await awaitable
        except TimeoutError:
            self._report(408, f"client stalled while sending the {what}")
            raise ConnectionError from None

    async def _serve_one(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        cfg = self.listener.config
        try:
            head = await self._read(reader.readuntil(b"\r\n\r\n"), "headers")
        except asyncio.LimitOverrunError:
            raise _Reject(431, "request headers too large") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                self._report(400, "request ended before its headers did")
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _Reject(400, "malformed request line")
        method, target, _version = parts
        headers: dict[str, str] = {}
        for line in lines:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise _Reject(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        if method != "POST":
            raise _Reject(405, f"{method[:10]} is not allowed; CloudChat POSTs events")
        if cfg.path and target.split("?", 1)[0] != cfg.path:
            raise _Reject(404, f"no webhook at {target[:80]} (listening on {cfg.path})")
        length = headers.get("content-length", "")
        if not length.isdigit():
            raise _Reject(411, "Content-Length required")
        size = int(length)
        if size > cfg.max_body:
            raise _Reject(413, f"body of {size} bytes is over --max-body ({cfg.max_body})")
        try:
            body = await self._read(reader.readexactly(size), "body")
        except asyncio.IncompleteReadError:
            self._report(400, "body was cut short")
            return
        delivery = await self._deliver(body, headers)
        self.listener.on_delivery(delivery)
        if delivery.status == 200:
            payload = {"status": "duplicate" if delivery.outcome == "duplicate" else "ok"}
        else:
            payload = {"error": delivery.reason}
        await self._answer(writer, delivery.status, payload)

    async def _deliver(self, body: bytes, headers: dict[str, str]) -> Delivery:
        from cloudchat_cli.services.webhooks.listener import Delivery

        if len(body) <= CHECK_ON_LOOP:
            checked = self.listener.check(body, headers)
        else:  # HMAC + JSON of a large body would hold up every other connection
            checked = await asyncio.get_running_loop().run_in_executor(
                None, self.listener.check, body, headers)
        if isinstance(checked, Delivery):
            return checked
        if self._flusher is None:
            return self.listener.finish(checked)
        done = asyncio.get_running_loop().create_future()
        item = self.listener.to_save(checked, done)
        self._flusher.submit(item)
        error = await asyncio.shield(done)  # a client hanging up does not undo the save
        return self.listener.finish(checked, item.path, error)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\nServer: cloudchat-listen\r\n\r\n").encode()
        try:
            writer.write(head + data)
            await writer.drain()
        except ConnectionError:
            pass
