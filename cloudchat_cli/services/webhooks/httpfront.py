"""The listener's HTTP front end: asyncio for the sockets, h11 for HTTP/1.1, one thread saving.

``http.server`` starts a thread per connection; under 50 concurrent deliveries that, plus its
header parsing, capped the listener near 1,000 deliveries/s with a p99 acknowledgement of
55-65 ms (bench/listener.py). Here one event loop reads requests (a stalled client costs a
coroutine, not a thread) and verifies them; with ``--save`` the accepted events go to the
store's ``Flusher``, which writes them and syncs each batch once, then wakes the loop once per
batch (docs/architecture.md, "The listener's save path").
Nothing that can block on the disk runs on the loop.

HTTP/1.1 itself is h11's (sans-I/O, used by httpx and uvicorn): chunked bodies, ``Expect:
100-continue``, keep-alive and pipelining, and strict framing (one Content-Length, digits only;
chunk sizes in hex; only ``chunked`` as a transfer coding). Every request gets an answer: a
framing error is a 400 (431 for oversized headers, 413 for an oversized body), a client that
stalls mid-request a 408, a bug in our own handling a 500; never a silently dropped connection.
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
from pathlib import Path
from typing import Any, Protocol

import h11

from cloudchat_cli.services.webhooks.outcomes import Accepted, Delivery
from cloudchat_cli.services.webhooks.rawrequest import RequestHead, describe, head_of
from cloudchat_cli.services.webhooks.store import EventStore, Flusher, PendingSave

MAX_HEADER_BYTES = 64 * 1024
CHECK_ON_LOOP = 64 * 1024  # bodies up to this size are verified on the loop (~30 us each)
READ_SIZE = 64 * 1024
HEALTH_PATH = "/healthz"  # GET: 200 with the forward queue's counts (no event contents)
LINGER = 2.0  # s: how long the unread body of a refused request is drained before closing


class FrontConfig(Protocol):
    path: str | None
    max_body: int
    read_timeout: float


class Service(Protocol):
    """What the front end needs from the listener (``listener.Listener``), which builds it:
    the front end does not import the listener, so neither depends on the other's module."""

    config: FrontConfig
    store: EventStore | None
    dedupe: Any  # services.webhooks.dedupe.DedupeStore or None

    def on_notice(self, message: str) -> None: ...
    def health(self) -> dict[str, Any]: ...
    def retry_now(self) -> None: ...
    def check_headers(self, headers: dict[str, str], signatures: int) -> Delivery | None: ...
    def check(self, body: bytes, headers: dict[str, str]) -> Delivery | Accepted: ...
    async def claim_shared(self, accepted: Accepted) -> Any: ...
    async def settle_shared(self, claim: Any, delivery: Delivery) -> None: ...
    def act(self, accepted: Accepted) -> Delivery | None: ...
    def to_save(self, accepted: Accepted, token: object = None) -> PendingSave: ...
    def accept(self, accepted: Accepted, saved: Path | None = None,
               error: OSError | None = None) -> Delivery: ...
    def failed(self, accepted: Accepted, exc: BaseException) -> Delivery: ...
    def shown(self, delivery: Delivery) -> Delivery: ...
    def finish(self, key: str, delivery: Delivery | None) -> None: ...


class _Refuse(Exception):
    """Answer ``status`` and close the connection (the request cannot be read further)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Idle(Exception):
    """The client closed a keep-alive connection (or left it idle) between requests."""


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


def _protocol_status(exc: h11.RemoteProtocolError) -> int:
    """h11's hint, except that what we cannot parse is the client's fault (400, not 501):
    CloudChat retries a 5xx, and a request that cannot be parsed never will be."""
    hint = exc.error_status_hint
    return hint if hint in (400, 408, 413, 431) else 400


class AsyncFront:
    """Serve ``listener`` on ``sock`` until SIGINT/SIGTERM; then finish what is in flight."""

    def __init__(self, listener: Service, sock: socket.socket):
        self.listener = listener
        self.sock = sock
        self._flusher: Flusher | None = None
        self._tasks: set[asyncio.Task] = set()
        self._idle: set[asyncio.Task] = set()  # keep-alive connections between requests
        self._stop: asyncio.Event | None = None
        self._stop_now: asyncio.Event | None = None
        self._stop_asked: str | None = None  # "stop" / "now", even before the loop runs
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def stop(self, *, now: bool = False) -> None:
        """Stop serving, from any thread or a signal handler (the listener's first
        SIGINT/SIGTERM, core/stop.py); ``now``: without waiting for deliveries in flight
        (the second). Asked before the loop runs, it stops as soon as it does."""
        self._stop_asked = self._stop_asked or "stop"
        if now:
            self._stop_asked = "now"
        loop, stop, stop_now = self._loop, self._stop, self._stop_now
        if loop is not None and stop is not None and stop_now is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already gone
                loop.call_soon_threadsafe(stop.set)
                if now:
                    loop.call_soon_threadsafe(stop_now.set)

    def run(self) -> None:
        main = threading.current_thread() is threading.main_thread()
        try:
            asyncio.run(self._main())
        finally:
            if main:
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # no longer meaningful

    async def _main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stop, self._stop_now = asyncio.Event(), asyncio.Event()
        if self._stop_asked:
            self._stop.set()
        if self._stop_asked == "now":
            self._stop_now.set()
        if self.listener.store is not None:
            def saved(batch: list[PendingSave]) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is already gone
                    loop.call_soon_threadsafe(self._saved, batch)

            self._flusher = self.listener.store.flusher(saved, self.listener.on_notice)
        if threading.current_thread() is threading.main_thread():
            # SIGINT/SIGTERM belong to the listener (core/stop.py), which calls stop().
            # SIGUSR1: retry the forward queue now (the operator knows the app is back)
            loop.add_signal_handler(signal.SIGUSR1, self.listener.retry_now)
        try:
            server = await asyncio.start_server(self._client, sock=self.sock,
                                                limit=MAX_HEADER_BYTES)
            async with server:
                await self._stop.wait()
                self.listener.on_notice("Stopping: finishing deliveries in flight (Ctrl-C "
                                       "again to stop at once)…")
                server.close()
                for task in list(self._idle):  # nothing in flight there: just close
                    task.cancel()
                if self._tasks:
                    await self._drain()
        finally:
            if self._flusher is not None:
                self._flusher.close()  # whatever was submitted is on disk before we return
            if self.listener.dedupe is not None:
                await self.listener.dedupe.aclose()

    async def _drain(self) -> None:
        """Wait for the deliveries in flight, unless told to stop now: then cancel them
        (unanswered, CloudChat retries them; an event already being saved is still written
        before the flusher closes)."""
        drained = asyncio.gather(*self._tasks, return_exceptions=True)
        now = asyncio.ensure_future(self._stop_now.wait())
        await asyncio.wait({drained, now}, return_when=asyncio.FIRST_COMPLETED)
        now.cancel()
        if not drained.done():
            for task in list(self._tasks):
                task.cancel()
            await drained

    @staticmethod
    def _saved(batch: list[PendingSave]) -> None:
        for item in batch:
            future: asyncio.Future = item.token
            if not future.done():
                future.set_result(item.error)

    # --- one connection ----------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        conn = _connection()
        try:
            while await self._serve_one(conn, reader, writer, task):
                # h11 parses; we write the answers ourselves (h11's validation of our own
                # constant headers took a quarter of the loop's time), so a new cycle is a new
                # h11 connection fed what the client already sent (pipelined requests)
                pending = conn.trailing_data[0]
                conn = _connection()
                if pending:
                    conn.receive_data(pending)
        except _Refuse as exc:
            self._report(exc.status, exc.reason)
            await self._refuse(reader, writer, exc.status, exc.reason)
        except (_Idle, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or we are stopping and it was idle: nothing to answer
        except Exception as exc:  # a bug of ours: still answer, and say what on stderr
            self._report(500, f"internal error: {type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                await self._refuse(reader, writer, 500, "internal error")
        finally:
            self._tasks.discard(task)
            self._idle.discard(task)
            writer.close()

    async def _serve_one(self, conn: h11.Connection, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, task: asyncio.Task) -> bool:
        """Read, check and answer one request; whether the connection can carry another."""
        if not conn.trailing_data[0]:
            self._idle.add(task)  # between requests: a stop closes the connection at once
        try:
            event = await self._next(conn, reader, writer, idle=True)
        finally:
            self._idle.discard(task)
        if isinstance(event, h11.ConnectionClosed):
            return False
        head = head_of(event)
        if head.method == "GET" and head.target.split("?", 1)[0] == HEALTH_PATH:
            await self._body(conn, reader, writer, head)
            status, payload = 200, self.listener.health()
        else:
            self._check_head(head)  # raises _Refuse before any of the body is read
            body = await self._body(conn, reader, writer, head)
            delivery = await self._deliver(body, head.headers)
            status, payload = delivery.status, _answer(delivery)
        # h11 has the request's keep-alive wish: MUST_CLOSE after "Connection: close"/HTTP/1.0
        keep = conn.their_state is h11.DONE and not self._stop.is_set()
        writer.write(_response(status, payload, close=not keep))
        await writer.drain()
        return keep


    def _check_head(self, head: RequestHead) -> None:
        """Refuse from the headers alone what the body cannot fix (before ``100 Continue``)."""
        cfg = self.listener.config
        if head.method != "POST":
            raise _Refuse(405, f"{head.method[:10]} is not allowed; CloudChat POSTs events")
        if cfg.path and head.target.split("?", 1)[0] != cfg.path:
            raise _Refuse(404, f"no webhook at {head.target[:80]} (listening on {cfg.path})")
        if head.length is not None and head.length > cfg.max_body:
            raise _Refuse(413, f"body of {head.length} bytes is over --max-body "
                               f"({cfg.max_body})")
        if head.framing_conflict:
            raise _Refuse(400, "both Transfer-Encoding and Content-Length: the body's length "
                               "is ambiguous")
        refused = self.listener.check_headers(head.headers, head.signatures)
        if refused is not None:
            raise _Refuse(refused.status, refused.reason)

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, head: RequestHead) -> bytes:
        """The decoded body, refused with 413 as soon as it grows past ``--max-body``."""
        limit = self.listener.config.max_body
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next(conn, reader, writer, chunked=head.chunked)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise _Refuse(413, f"body is over --max-body ({limit} bytes)")
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:  # pragma: no cover - h11 pauses only after a message: never spin on it
                raise _Refuse(400, f"malformed request: unexpected {type(event).__name__}")

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, idle: bool = False,
                    chunked: bool = False):
        """h11's next event, reading from the socket as it needs."""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Refuse(_protocol_status(exc), describe(exc)) from None
            if event is not h11.NEED_DATA:
                return event
            pending = conn.trailing_data[0]
            if chunked and _bare_lf_chunk_line(pending):
                raise _Refuse(400, "malformed request: chunk size line does not end in CRLF")
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(
                    status_code=100, headers=[], reason=b"Continue")))
            data = await self._recv(reader, idle=idle and not pending)
            if idle and data:  # a request has begun: a stop now waits for its answer
                self._idle.discard(asyncio.current_task())
            conn.receive_data(data)

    async def _recv(self, reader: asyncio.StreamReader, *, idle: bool) -> bytes:
        try:
            # asyncio.timeout, not wait_for: no extra task per read (~10 % of the loop's CPU)
            async with asyncio.timeout(self.listener.config.read_timeout):
                return await reader.read(READ_SIZE)
        except TimeoutError:
            if idle:  # a keep-alive connection nobody uses: close it quietly
                raise _Idle from None
            raise _Refuse(408, "client stalled mid-request (--read-timeout)") from None

    # --- answers -----------------------------------------------------------------------------

    async def _deliver(self, body: bytes, headers: dict[str, str]) -> Delivery:
        listener = self.listener
        if len(body) <= CHECK_ON_LOOP:
            checked = listener.check(body, headers)
        else:  # HMAC + JSON of a large body would hold up every other connection
            checked = await asyncio.get_running_loop().run_in_executor(
                None, listener.check, body, headers)
        if not isinstance(checked, Accepted):
            return listener.shown(checked)
        delivery = None
        try:
            delivery = await self._handle(checked)
            return delivery
        finally:  # whatever the answer (or a bug): the event is no longer in flight
            listener.finish(checked.key, delivery)

    async def _handle(self, checked: Accepted) -> Delivery:
        listener = self.listener
        if listener.dedupe is None:
            return await self._accept(checked)
        claim = await listener.claim_shared(checked)  # shared by replicas: one round trip
        if isinstance(claim, Delivery):
            return listener.shown(claim)
        delivery = await self._accept(checked)
        await listener.settle_shared(claim, delivery)  # before the answer: 200 = saved + done
        return delivery

    async def _accept(self, checked: Accepted) -> Delivery:
        """Save (with ``--save``) and acknowledge one accepted event."""
        listener = self.listener
        try:
            refused = listener.act(checked)  # opt-outs: recorded before the save, or a 500
            if refused is not None:
                return refused
            if self._flusher is None:
                return listener.accept(checked)
            done = asyncio.get_running_loop().create_future()
            item = listener.to_save(checked, done)
            self._flusher.submit(item)
            error = await asyncio.shield(done)  # a client hanging up does not undo the save
            return listener.accept(checked, item.path, error)
        except Exception as exc:
            return listener.failed(checked, exc)

    def _report(self, status: int, reason: str) -> None:
        self.listener.shown(Delivery(time.time(), status, "rejected", reason))

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      status: int, reason: str) -> None:
        """Answer and close; read (and drop) what the client still sends for a moment, so
        the kernel does not reset the connection before the client has read the answer."""
        try:
            writer.write(_response(status, {"error": reason}, close=True))
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(LINGER):
                while await reader.read(READ_SIZE):
                    pass
        except (ConnectionError, TimeoutError):
            pass


def _answer(delivery: Delivery) -> dict:
    if delivery.status == 200:
        return {"status": "duplicate" if delivery.outcome == "duplicate" else "ok"}
    return {"error": delivery.reason}


def _connection() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)


def _response(status: int, payload: dict, *, close: bool) -> bytes:
    if status == 200 and len(payload) == 1:  # the answers to nearly every delivery
        cached = _CACHED.get((payload.get("status"), close))
        if cached is not None:
            return cached
    return _render(status, payload, close)


def _render(status: int, payload: dict, close: bool) -> bytes:
    data = json.dumps(payload).encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(data)}\r\nServer: cloudchat-listen\r\n"
            + ("Connection: close\r\n\r\n" if close else "\r\n")).encode() + data


_CACHED = {(answer, close): _render(200, {"status": answer}, close)
           for answer in ("ok", "duplicate") for close in (False, True)}


def _bare_lf_chunk_line(pending: bytes) -> bool:
    """Whether the unparsed bytes h11 waits on hold a chunk-size line ended by a bare LF.

    h11 waits for CRLF there, so a sender using LF alone would stall until ``--read-timeout``.
    Trailer lines (which h11 does accept with bare LF) contain a colon; chunk-size lines do not.
    """
    end = pending.find(b"\n")
    if end == -1:
        return False
    line = pending[:end]
    return not line.endswith(b"\r") and b":" not in line
