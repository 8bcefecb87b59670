"""Send a broadcast's pending rows: a dispatcher feeding worker threads through the throttle.

Rows are read from the journal a page at a time (flat memory). A row is marked ``sending`` only
once its rate-limit slot is held (so a crash while waiting leaves it ``pending``: never sent,
safely resent), and its answer is committed before the next row is taken.

Stopping follows ``core/stop.py``: once a stop is requested no row is taken, the waits for a
slot or a retry end at once (the client is built with the stop's ``sleep``, which raises
``Stopped``: see the use case; their rows stay ``pending``), and the rows in flight get their
answer. Once a stop *now* is requested the run returns without waiting for them: from then on
no worker writes the journal, so those rows stay ``sending`` (reported ``unknown``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudchat_cli.core.errors import ApiError, CloudChatError, NetworkError, UnexpectedResponse
from cloudchat_cli.core.stop import GracefulStop, Stopped
from cloudchat_cli.services.broadcast.journal import Journal, JournalMoved
from cloudchat_cli.services.messages import send_message

if TYPE_CHECKING:
    from cloudchat_cli.core.http import ApiClient

# Answers that mean no other row can succeed either: stop the run, keep the rest pending.
# (A 3xx and a 2xx without a message stop it too, after recording their row: see _send.)
FATAL_STATUSES = {401, 403, 404}


class _Abandoned(BaseException):  # noqa: N818 - travels through the HTTP core untouched
    """The run stopped without this worker: it must not write the journal any more."""


@dataclass
class RunResult:
    # (no per-state counts: the journal is the record, and callers read them from it)
    stopped: bool = False
    fatal: CloudChatError | None = None
    abandoned: int = 0  # rows left in flight by a stop *now* (their answer never recorded)


class Runner:
    """Run the pending rows of ``journal`` through ``client`` with ``concurrency`` workers."""

    def __init__(
        self,
        journal: Journal,
        client: ApiClient,
        *,
        concurrency: int = 4,
        stop: GracefulStop | None = None,
        on_row: Callable[[int, str, dict[str, Any]], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ):
        self.journal = journal
        self.client = client
        self.concurrency = max(1, concurrency)
        self.stop = stop or GracefulStop()
        self.on_row = on_row or (lambda row, state, info: None)
        self.on_tick = on_tick or (lambda: None)
        self.result = RunResult()
        self._lock = threading.Lock()
        # Held while a worker writes the journal; once ``_abandoned`` is set under it, no
        # worker writes again (the caller may be writing the report and closing the journal).
        self._write_lock = threading.Lock()
        self._abandoned = False
        self._inflight: set[int] = set()  # rows marked sending, answer not yet recorded
        self._live = 0
        self._all_done = threading.Event()
        self._queue: queue.Queue[tuple[int, dict] | None] = queue.Queue(self.concurrency * 2)

    def run(self) -> RunResult:
        workers = [
            threading.Thread(target=self._work, name=f"broadcast-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        self._live = len(workers)
        for worker in workers:
            worker.start()
        try:
            self._dispatch()
        finally:
            for _ in workers:
                self._put(None, force=True)
            self._wait_for(workers)
        self.result.stopped = self.stop.requested.is_set() and self.result.fatal is None
        return self.result

    def _wait_for(self, workers: list[threading.Thread]) -> None:
        """Wait for the workers to end, or, on a stop *now*, for their journal writes only."""
        while not self._all_done.wait(0.2):
            if self.stop.now.is_set():
                with self._write_lock:  # no worker is writing; none will again
                    self._abandoned = True
                    self.result.abandoned = len(self._inflight)
                return
        for worker in workers:
            worker.join()

    def _put(self, item: tuple[int, dict] | None, force: bool = False) -> bool:
        while True:
            if self.stop.requested.is_set() and not force:
                return False
            if force and self.stop.now.is_set():
                return True  # nobody waits for the workers now: no need to end them
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                self.on_tick()

    def _dispatch(self) -> None:
        after = 0
        while not self.stop.requested.is_set():
            page = self.journal.pending(after)
            if not page:
                return
            for row, payload in page:
                if not self._put((row, payload)):
                    return
                after = row

    def _work(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if self.stop.requested.is_set():
                    continue  # drained: the row stays pending
                try:
                    self._send(*item)
                except _Abandoned:
                    return
                except CloudChatError as exc:  # the journal itself failed: stop everything
                    self._fatal(exc)
                except Exception as exc:  # never let a worker die silently
                    self._fatal(CloudChatError(
                        f"broadcast worker failed: {type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._live -= 1
                if self._live == 0:
                    self._all_done.set()

    def _mark(self, row: int, state: str, **fields: Any) -> None:
        """Write a row's state, unless the run was stopped without this worker."""
        with self._write_lock:
            if self._abandoned:
                raise _Abandoned()
            self.journal.mark(row, state, **fields)
            if state == "sending":
                self._inflight.add(row)
            else:
                self._inflight.discard(row)

    def _send(self, row: int, payload: dict) -> None:
        marked = []

        def on_send() -> None:
            self.journal.verify_path()  # JournalMoved: stop before this request goes out
            if not marked:
                self._mark(row, "sending")
                marked.append(True)
            if self.client.throttle is not None:
                try:
                    self.client.throttle.sent()  # the spacing counts from here, not the slot
                except BaseException:
                    self.journal.mark(row, "pending")  # its request has not gone out
                    marked.clear()
                    raise

        try:
            result = send_message(self.client, payload, on_send=on_send)
        except Stopped:
            # Stopped while waiting: for a slot (never sent) or to retry a 5xx/429 (rejected).
            if marked:
                self._mark(row, "pending")
            return
        except JournalMoved:
            if marked:  # found before a retry: the earlier attempt was rejected
                self._mark(row, "pending")
            raise
        except ApiError as exc:
            if exc.status in FATAL_STATUSES:
                self._mark(row, "pending")
                self._fatal(exc)
                return
            self._mark(row, "failed", http_status=exc.status, error=exc.message)
            self._count("failed", row, {"status": exc.status, "error": exc.message})
            if 300 <= exc.status < 400:  # base_url is wrong for every row: stop, keep the rest
                _add_hint(exc, "once fixed, add --retry-failed to resend the failed row(s)")
                self._fatal(exc)
            return
        except UnexpectedResponse as exc:
            # Something that is not the API answered 2xx (a portal, a proxy): this row may or
            # may not have been sent, and every other row would meet the same answer.
            self._mark(row, "unknown", error=exc.message)
            self._count("unknown", row, {"error": exc.message})
            _add_hint(exc, "--retry-unknown resends the unknown row(s) (may duplicate)")
            self._fatal(exc)
            return
        except NetworkError as exc:
            if exc.outcome_unknown:
                self._mark(row, "unknown", error=exc.message)
                self._count("unknown", row, {"error": exc.message})
            else:  # nothing reached the server: keep the row, stop the run
                self._mark(row, "pending")
                self._fatal(exc)
            return
        message_id = str(result["response"]["id"])
        self._mark(row, "sent", message_id=message_id, http_status=result["status"])
        self._count("sent", row, {"id": message_id})

    def _count(self, state: str, row: int, info: dict[str, Any]) -> None:
        self.on_row(row, state, info)

    def _fatal(self, exc: CloudChatError) -> None:
        with self._lock:
            if self.result.fatal is None:
                self.result.fatal = exc
        self.stop.request()


def _add_hint(exc: CloudChatError, text: str) -> None:
    exc.hint = f"{exc.hint}; {text}" if exc.hint else text
