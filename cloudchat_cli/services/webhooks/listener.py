"""``webhook listen``: receive, verify, deduplicate, save, then acknowledge — fast.

Each delivery is answered well within CloudChat's 5 s deadline: verification and the durable
save happen before the 200; forwarding to a local app and ``--exec`` happen after, on a worker
thread, so a slow or dead app never makes CloudChat retry. A forward that still fails after
the vendor's own retry policy leaves the event saved on disk (in ``--save DIR``, or else in the
state dir's ``webhooks/undelivered``) and reported on stderr: never lost.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudchat_cli.core import credentials, paths
from cloudchat_cli.core.errors import CloudChatError
from cloudchat_cli.services.webhooks import events
from cloudchat_cli.services.webhooks.delivery import deliver
from cloudchat_cli.services.webhooks.httpfront import AsyncFront, bind
from cloudchat_cli.services.webhooks.outcomes import Accepted, Delivery
from cloudchat_cli.services.webhooks.signature import (
    HEADER,
    SignatureFormatError,
    parse_signature,
    verify,
)
from cloudchat_cli.services.webhooks.store import EventStore, PendingSave, event_key

FORWARD_HEADERS = {"content-type": "Content-Type", "x-cloudchat-signature": HEADER,
                   "x-cloudchat-event": "X-CloudChat-Event", "user-agent": "User-Agent"}


@dataclass
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    path: str | None = None
    secrets: list[str] = field(default_factory=list)
    verify: bool = True
    max_body: int = 1024 * 1024
    save_dir: Path | None = None
    forward_to: str | None = None
    exec_cmd: str | None = None
    read_timeout: float = 10.0
    forward_delays: tuple[float, ...] = (2.0, 4.0, 8.0)
    on_event: Callable[[dict[str, Any]], None] | None = None  # per accepted event (opt-outs)


@dataclass
class Job:
    key: str
    body: bytes
    headers: dict[str, str]
    event: dict[str, Any] | None
    saved: Path | None


class Listener:
    """An asyncio HTTP front end, a thread saving events in batches (``--save``), and one
    worker for forwarding and ``--exec``."""

    def __init__(
        self,
        config: ListenConfig,
        *,
        on_delivery: Callable[[Delivery], None] = lambda d: None,
        on_notice: Callable[[str], None] = lambda m: None,
    ):
        self.config = config
        self.on_delivery = on_delivery
        self.on_notice = on_notice
        self.store = EventStore(config.save_dir) if config.save_dir else None
        # Keys of events saved by earlier runs: a retry after a restart is still a duplicate.
        self._seen: set[str] = self.store.keys() if self.store else set()
        self._seen_lock = threading.Lock()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="forward", daemon=True)
        self.front = AsyncFront(self, bind(config.host, config.port))

    @property
    def port(self) -> int:
        return self.front.port

    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}{self.config.path or '/'}"

    def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (or ``stop()``); deliveries in flight are finished."""
        self._worker.start()
        self.front.run()

    def shutdown(self) -> None:
        """After serving: drain the forward queue (one attempt each, no retry waits: what
        does not get through is kept on disk)."""
        self._stopping.set()
        self._jobs.put(None)
        if self._worker.is_alive():
            self._worker.join()

    # --- per request -----------------------------------------------------------------------

    def check_headers(self, headers: dict[str, str], signatures: int) -> Delivery | None:
        """The refusal the headers alone already decide (answered before reading the body,
        instead of ``100 Continue``), or None."""
        if signatures > 1:
            return Delivery(time.time(), 400, "rejected", f"{signatures} {HEADER} headers: "
                            "send one")
        if not self.config.verify:
            return None
        signature = headers.get(HEADER.lower())
        if not signature:
            return Delivery(time.time(), 401, "rejected", f"missing {HEADER} header")
        try:
            parse_signature(signature)
        except SignatureFormatError as exc:
            return Delivery(time.time(), 401, "rejected", exc.message)
        return None

    def check(self, body: bytes, headers: dict[str, str]) -> Delivery | Accepted:
        """Verify, parse and deduplicate one delivery: the final answer, or an event to save.

        CPU only (HMAC, JSON): runs on the front end's event loop. An accepted event is marked
        seen at once, so a retry arriving while it is being saved is a duplicate.
        """
        now = time.time()
        cfg = self.config
        verified = False
        if cfg.verify:
            signature = headers.get(HEADER.lower())
            if not signature:
                return Delivery(now, 401, "rejected", f"missing {HEADER} header")
            try:
                verified = verify(cfg.secrets, body, signature) is not None
            except SignatureFormatError as exc:
                return Delivery(now, 401, "rejected", exc.message)
            if not verified:
                return Delivery(now, 401, "rejected", "signature does not match (wrong secret "
                                "or altered body)")
        event = events.parse_body(body)
        if event is None:
            return Delivery(now, 400, "rejected", "body is not a JSON object", verified=verified)
        event_id = event.get("id") if isinstance(event.get("id"), str) else None
        key = event_key(event_id, body)
        with self._seen_lock:
            duplicate = key in self._seen
            if not duplicate:
                self._seen.add(key)
        if duplicate:
            return Delivery(now, 200, "duplicate", "already received (a retry)", event,
                            event_id, verified)
        return Accepted(now, key, body, headers, event, event_id, verified)

    def to_save(self, accepted: Accepted, token: object = None) -> PendingSave:
        """The file ``--save`` writes for an accepted event (``self.store`` must be set)."""
        return self.store.pending(accepted.key, accepted.body,
                                  _meta(accepted.event_id, accepted.received_at,
                                        accepted.headers), token)

    def accept(self, accepted: Accepted, saved: Path | None = None,
               error: OSError | None = None) -> Delivery:
        """Show an accepted event once it is saved (or could not be) and hand it to
        ``--forward-to``/``--exec``; the answer to send. Raises if it cannot be shown (the
        caller answers 500 through ``failed``)."""
        a = accepted
        if error is not None:
            self._forget(a.key)  # not saved: CloudChat's retry must be taken again
            return self.shown(Delivery(a.received_at, 500, "rejected", "could not save the "
                                       "event", a.event, a.event_id, a.verified,
                                       detail=str(error)))
        delivery = Delivery(a.received_at, 200, "accepted", "", a.event, a.event_id,
                            a.verified, saved)
        self.on_delivery(delivery)
        if self.config.on_event is not None:  # e.g. opt-out keywords; reports its own errors
            self.config.on_event(a.event)
        if self.config.forward_to or self.config.exec_cmd:
            self._jobs.put(Job(a.key, a.body, a.headers, a.event, saved))
        return delivery

    def failed(self, accepted: Accepted, exc: BaseException) -> Delivery:
        """Any failure while handling an accepted event: 500, and its retry is a new event."""
        self._forget(accepted.key)
        return self.shown(Delivery(time.time(), 500, "rejected", "internal error while "
                                   "handling the event", accepted.event, accepted.event_id,
                                   accepted.verified, detail=f"{type(exc).__name__}: {exc}"))

    def shown(self, delivery: Delivery) -> Delivery:
        """Show a delivery that is not an accepted event; displaying never costs the answer."""
        try:
            self.on_delivery(delivery)
        except Exception as exc:  # noqa: BLE001 - report, and still answer
            self.on_notice(f"could not show a {delivery.status} delivery: "
                           f"{type(exc).__name__}")
        return delivery

    def _forget(self, key: str) -> None:
        with self._seen_lock:
            self._seen.discard(key)

    # --- after the answer: forward and exec --------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self.config.forward_to:
                self._forward(job)
            if self.config.exec_cmd:
                self._exec(job)

    def _forward(self, job: Job) -> None:
        headers = {FORWARD_HEADERS[k]: v for k, v in job.headers.items() if k in FORWARD_HEADERS}

        def wait(seconds: float) -> None:
            if self._stopping.wait(seconds):
                raise _Abandon()

        def shown(attempt, delay) -> None:
            what = f"HTTP {attempt.status}" if attempt.status else (attempt.error or "failed")
            retry = f"; retrying in {delay:g} s" if delay else ""
            self.on_notice(f"forward {job.key}: {what} in {attempt.elapsed * 1000:.0f} ms{retry}")

        try:
            attempts = deliver(self.config.forward_to, job.body, headers,
                               retry=not self._stopping.is_set(),
                               delays=self.config.forward_delays, on_attempt=shown, sleep=wait)
        except _Abandon:
            self._keep(job, "not forwarded: the listener stopped before the app answered")
            return
        if not attempts[-1].ok:
            self._keep(job, f"forward to {self.config.forward_to} failed after "
                            f"{len(attempts)} attempt(s)")

    def _keep(self, job: Job, why: str) -> None:
        """Make sure an event that did not reach the app is on disk, and say where."""
        where = job.saved
        if where is None:
            directory = paths.state_dir() / "webhooks" / "undelivered"
            try:
                where = EventStore(directory).save(job.key, job.body, _meta(
                    (job.event or {}).get("id"), time.time(), job.headers, reason=why))
            except (OSError, CloudChatError) as exc:
                message = exc.message if isinstance(exc, CloudChatError) else exc
                self.on_notice(f"{why}; and it could not be kept in {directory}: {message} "
                               "(CloudChat will not resend it: this event is lost)")
                return
        self.on_notice(f"{why}; the event is saved at {where}")

    def _exec(self, job: Job) -> None:
        try:
            proc = subprocess.run(shlex.split(self.config.exec_cmd), input=job.body,
                                  capture_output=True, timeout=60,
                                  env=_child_env(self.config.secrets))
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self.on_notice(f"--exec failed for {job.key}: {exc}")
            return
        if proc.returncode != 0:
            self.on_notice(f"--exec exited {proc.returncode} for {job.key}: "
                           f"{proc.stderr.decode('utf-8', 'replace').strip()[:200]}")


def _child_env(secrets: list[str]) -> dict[str, str]:
    """The environment for ``--exec``: ours, without the API key or the webhook secret (nor
    the files they are read from, nor any variable holding a secret in use): the command
    gets the event, not the credentials."""
    hidden = {credentials.API_KEY.env, credentials.API_KEY.file_env,
              credentials.WEBHOOK_SECRET.env, credentials.WEBHOOK_SECRET.file_env}
    return {k: v for k, v in os.environ.items() if k not in hidden and v not in secrets}


def _meta(event_id: object, received_at: float, headers: dict[str, str], **extra: str) -> dict:
    """What a saved event records besides its body: enough for ``verify --dir`` and replay."""
    return {"id": event_id, "received_at": received_at,
            "signature": headers.get(HEADER.lower()), **extra,
            "headers": {k: v for k, v in headers.items() if k in FORWARD_HEADERS}}


class _Abandon(Exception):
    """The listener is stopping: give up waiting to retry a forward."""
