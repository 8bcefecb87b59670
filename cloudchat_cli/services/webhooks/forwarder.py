"""Forward saved events to the app, in arrival order, until each is delivered or given up.

One thread takes the oldest pending event of the ``ForwardQueue``, reads its saved file and
POSTs the exact body with its original CloudChat headers (one attempt, 5 s in total). A 2xx
marks it delivered. A 400, 409, 410, 413, 415 or 422 is the app refusing this one event: it
is given up at once (it stays saved; ``webhook replay --id`` sends it again), and the next
one goes. Anything else (no answer, 5xx, 429, a redirect, 401, 404…) means the app is not
there or not right yet: the event stays at the head and waits its backoff, so nothing
overtakes it.

Output is by transition, not per attempt: one line when the app stops accepting events, one
when it is back, one per event given up, and a periodic line while events wait. ``verbose``
adds a line per attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cloudchat_cli.core.deadline import NO_KEEPALIVE
from cloudchat_cli.services.webhooks.delivery import TIMEOUT, Attempt, deliver
from cloudchat_cli.services.webhooks.queue import ForwardQueue, Waiting
from cloudchat_cli.services.webhooks.store import EventStore, NewerFormat, original_headers

STOP_GRACE = 10.0  # s: on stop, keep delivering what is due for at most this long


# Answers that blame the event itself: another attempt would get the same. Any other failure
# (no answer, 5xx, 408, 429, but also a redirect, 401/403, 404, 405) says the app or its URL is
# not right yet, and would be the same for every event: the event waits at the head instead
# of the whole queue being given up, one event at a time, over a misconfiguration.
REFUSALS = frozenset({400, 409, 410, 413, 415, 422})


def retryable(attempt: Attempt) -> bool:
    """Whether the app may take it later (anything but a refusal of this event)."""
    return attempt.status not in REFUSALS


def describe(attempt: Attempt) -> str:
    if attempt.status is None:
        return attempt.error or "no answer"
    return f"HTTP {attempt.status}" + (f" {attempt.body}" if attempt.body else "")


class Forwarder:
    def __init__(self, url: str, store: EventStore, queue: ForwardQueue, *,
                 on_notice: Callable[[str], None], verbose: bool = False,
                 status_interval: float = 60.0, delete_delivered: bool = False,
                 send: Callable[..., list[Attempt]] = deliver):
        self.url = url
        self.store = store
        self.queue = queue
        self.on_notice = on_notice
        self.verbose = verbose
        self.status_interval = status_interval
        self.delete_delivered = delete_delivered  # the state dir's outbox, not the user's --save
        self._send = send
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._retry_now = threading.Event()
        self._down_since: float | None = None
        self._last_status = time.monotonic()
        self._client: httpx.Client | None = None
        self._thread = threading.Thread(target=self._run, name="forward", daemon=True)

    def start(self) -> None:
        waiting = self.queue.waiting
        if waiting:
            self.on_notice(f"forward queue: {waiting} event(s) waiting from an earlier run; "
                           f"resuming delivery to {self.url}")
            self._down_since = self.queue.clock()  # "is back" once they are delivered
        self._thread.start()

    def wake(self) -> None:
        """A new event is queued: look at the head again (it may be this one)."""
        self._wake.set()

    def retry_now(self) -> None:
        """Make every waiting event due now (the operator knows the app is back)."""
        self._retry_now.set()
        self._wake.set()

    def stop(self) -> None:
        """Deliver what is due (until the first failure, for at most ``STOP_GRACE`` s), then
        stop; what is left waits on disk for the next run."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    # --- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        # One client for the thread: building one per attempt (its TLS context) cost more
        # than the delivery itself over loopback. No keep-alive: each attempt is a new
        # connection, watched for the 5 s total deadline.
        self._client = httpx.Client(timeout=TIMEOUT, limits=NO_KEEPALIVE)
        try:
            self._guarded()
        finally:
            self._client.close()

    def _guarded(self) -> None:
        while True:
            try:
                self._loop()
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the disk is full: say so, go on
                message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                self.on_notice(f"forward queue: {message}; trying again in 5 s")
                if self._stopping.wait(5.0):
                    return

    def _loop(self) -> None:
        grace_end: float | None = None
        while True:
            if self._stopping.is_set() and grace_end is None:
                grace_end = time.monotonic() + STOP_GRACE
            if self._retry_now.is_set():
                self._retry_now.clear()
                waiting = self.queue.make_due()
                self.on_notice(f"forward queue: retrying {waiting} waiting event(s) now")
            head = self.queue.head()
            now = self.queue.clock()
            if grace_end is not None and (head is None or head.next_at > now
                                          or time.monotonic() > grace_end):
                return
            if head is None or head.next_at > now:
                self._periodic()
                timeout = self.status_interval if head is None else min(
                    head.next_at - now, self.status_interval)
                self._wake.wait(max(0.0, timeout))
                self._wake.clear()
                continue
            if not self._attempt(head) and grace_end is not None:
                return  # the app is down: no point trying the rest while stopping

    def _attempt(self, head: Waiting) -> bool:
        try:
            saved = self.store.load(head.key)
        except NewerFormat as exc:  # a newer cloudchat's file: it stays there for that one
            self.queue.give_up(head.key, exc.message)
            self.on_notice(f"forward {head.key}: given up: {exc.message}")
            return True
        if saved is None:
            self.queue.give_up(head.key, "its saved file is missing or unreadable")
            self.on_notice(f"forward {head.key}: given up: its file in {self.store.dir} is "
                           "missing or unreadable")
            return True
        try:
            attempt = self._send(self.url, saved.body, original_headers(saved.meta),
                                 retry=False, client=self._client)[-1]
        except Exception as exc:  # noqa: BLE001 - this event cannot be sent: never wedge the rest
            why = f"it cannot be sent: {type(exc).__name__}: {exc}"
            self.queue.give_up(head.key, why)
            self.on_notice(f"forward {head.key}: given up: {why}")
            return True
        if attempt.ok:
            self.queue.delivered(head.key)
            if self.verbose:
                self.on_notice(f"forward {head.key}: HTTP {attempt.status} in "
                               f"{attempt.elapsed * 1000:.0f} ms")
            if self.delete_delivered:
                self.store.remove(head.key)
            self._back_up()
            return True
        why = describe(attempt)
        if not retryable(attempt):
            self.queue.give_up(head.key, why)
            self.on_notice(f"forward {head.key}: the app refused it ({why}): given up; it is "
                           f"saved at {self.store.dir / (head.key + '.json')} "
                           "(`cloudchat webhook replay` sends it again)")
            return True
        due = self.queue.failed(head, why)
        if due is None:
            self.on_notice(f"forward {head.key}: given up after "
                           f"{_age(self.queue.clock() - head.received_at)}: {why}; it is "
                           f"saved at {self.store.dir / (head.key + '.json')}")
            return True
        wait = due - self.queue.clock()
        if self.verbose:
            self.on_notice(f"forward {head.key}: {why} in {attempt.elapsed * 1000:.0f} ms; "
                           f"retrying in {wait:.3g} s")
        if self._down_since is None:
            self._down_since = self.queue.clock()
            self.on_notice(f"forward: {self.url} is not taking events ({why}); "
                           f"{self.queue.waiting} waiting, kept on disk; retrying in "
                           f"{wait:.3g} s, backing off up to {self.queue.policy.max_delay:g} s")
        return False

    def _back_up(self) -> None:
        if self._down_since is None:
            return
        if self.queue.waiting == 0:
            self.on_notice(f"forward: {self.url} is back; every waiting event is delivered "
                           f"(down for {_age(self.queue.clock() - self._down_since)})")
            self._down_since = None

    def _periodic(self) -> None:
        if time.monotonic() - self._last_status < self.status_interval:
            return
        self._last_status = time.monotonic()
        waiting = self.queue.waiting
        if waiting:
            head = self.queue.head()
            oldest = f", oldest {_age(self.queue.clock() - head.received_at)} old" if head else ""
            self.on_notice(f"forward queue: {waiting} event(s) waiting for {self.url}{oldest}")


def _age(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def outbox_dir(state_dir: Path, url: str) -> Path:
    """Where events wait without ``--save``: one outbox per forward URL in the state dir."""
    import hashlib

    return state_dir / "webhooks" / "outbox" / hashlib.sha256(url.encode()).hexdigest()[:16]
