"""``webhook listen``: receive, verify, deduplicate, save, then acknowledge — fast.

Each delivery is answered well within CloudChat's 5 s deadline: verification and the durable
save happen before the 200; forwarding to a local app and ``--exec`` happen after, on worker
threads, so a slow or dead app never makes CloudChat retry. With ``--forward-to`` every event
is saved (in ``--save DIR``, or else in the state dir's outbox) and queued on disk in the same
batch, before the 200; the forwarder retries it, in arrival order, until the app takes it or
the policy gives it up — across restarts of the listener (``queue.py``, ``forwarder.py``).
"""

from __future__ import annotations

import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloudchat_cli.core import credentials, environment, paths
from cloudchat_cli.core.stop import GracefulStop
from cloudchat_cli.services.webhooks import events
from cloudchat_cli.services.webhooks.forwarder import Forwarder, outbox_dir
from cloudchat_cli.services.webhooks.httpfront import AsyncFront, bind
from cloudchat_cli.services.webhooks.outcomes import Accepted, Delivery
from cloudchat_cli.services.webhooks.queue import ForwardPolicy, ForwardQueue
from cloudchat_cli.services.webhooks.signature import (
    HEADER,
    SignatureFormatError,
    parse_signature,
    verify,
)
from cloudchat_cli.services.webhooks.store import (
    FORWARD_HEADERS,
    EventStore,
    PendingSave,
    event_key,
)


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
    forward_policy: ForwardPolicy = field(default_factory=ForwardPolicy)
    verbose: bool = False  # a stderr line per forward attempt
    status_interval: float = 60.0  # s between "N waiting" lines while events wait
    on_event: Callable[[dict[str, Any]], None] | None = None  # per accepted event (opt-outs)
    dedupe_store: str | None = None  # a Redis URL shared by replicas (services/webhooks/dedupe)
    dedupe_ttl: float = 7 * 86400.0
    dedupe_claim_ttl: float = 10.0


@dataclass
class Job:
    key: str
    body: bytes
    headers: dict[str, str]
    event: dict[str, Any] | None
    saved: Path | None


class Listener:
    """An asyncio HTTP front end, a thread saving events in batches (``--save``), a
    forwarder working through the queue on disk, and one worker for ``--exec``."""

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
        self.dedupe = None
        if config.dedupe_store:  # before binding: an unusable store is exit 7, not a listener
            from cloudchat_cli.services.webhooks import dedupe

            self.dedupe = dedupe.DedupeStore(config.dedupe_store, ttl=config.dedupe_ttl,
                                             claim_ttl=config.dedupe_claim_ttl)
            self.dedupe.check()
            self._namespaces = [dedupe.namespace(s) for s in config.secrets]
        save_dir = config.save_dir
        if save_dir is None and config.forward_to:  # nothing may wait in memory only
            save_dir = outbox_dir(paths.state_dir(), config.forward_to)
        self.store = EventStore(save_dir) if save_dir else None
        # Keys of events saved by earlier runs: a retry after a restart is still a duplicate.
        self._seen: set[str] = self.store.keys() if self.store else set()
        # Keys of accepted events not answered yet (being saved): a retry of one is a 503, not
        # a duplicate, since the save may still fail (``finish`` moves a key to ``_seen``).
        self._inflight: set[str] = set()
        self._seen_lock = threading.Lock()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._stopping = threading.Event()
        # SIGINT/SIGTERM while ``run()`` serves: the first finishes what is in flight, the
        # second stops at once (core/stop.py). ``stopped_now`` and ``exec_skipped`` say what
        # the second left undone.
        self.stop = GracefulStop(on_first=lambda name: self.front.stop(),
                                 on_second=self._stop_now)
        self.stopped_now = False
        self.exec_skipped = 0
        self._worker = threading.Thread(target=self._work, name="exec", daemon=True)
        self.front = AsyncFront(self, bind(config.host, config.port))
        self.queue: ForwardQueue | None = None  # opened once the port is ours (a run begins)
        self.forwarder: Forwarder | None = None
        if config.forward_to and self.store is not None:
            try:
                self._open_queue()
            except BaseException:
                self.front.sock.close()
                raise

    def _open_queue(self) -> None:
        config = self.config
        self.queue = ForwardQueue(self.store.dir, policy=config.forward_policy)
        self._seen |= set(self.queue.states())  # delivered outbox files are removed
        self._requeue_unrecorded()
        self.store.after_write = self._queue_saved
        self.forwarder = Forwarder(
            config.forward_to, self.store, self.queue, on_notice=self.on_notice,
            verbose=config.verbose, status_interval=config.status_interval,
            delete_delivered=config.save_dir is None)

    @property
    def port(self) -> int:
        return self.front.port

    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}{self.config.path or '/'}"

    def run(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Serve until SIGINT/SIGTERM, then shut down (``serve_forever``, ``shutdown``).

        ``on_ready`` runs once the signals are ours (say "Listening on …" there): a signal
        from then on is a clean stop, however early it comes."""
        with self.stop:
            try:
                on_ready()
                self.serve_forever()
            finally:
                self.shutdown()

    def serve_forever(self) -> None:
        """Serve until ``front.stop()`` (the first signal); deliveries in flight are finished
        unless a stop *now* (the second) cancels them: unanswered, CloudChat retries them."""
        self._worker.start()
        if self.forwarder is not None:
            self.forwarder.start()
        self.front.run()

    def _stop_now(self, name: str) -> None:
        self.on_notice("Stopping at once: not waiting for deliveries in flight (CloudChat "
                       "retries them), queued --exec commands or forwards (they wait on disk "
                       "for the next run)…")
        self.front.stop(now=True)

    def shutdown(self) -> None:
        """After serving: run the ``--exec`` commands still queued, deliver the forwards
        that are due while the app takes them (briefly); the rest waits on disk. After a
        stop *now*, wait for neither: the queued ``--exec`` commands are skipped
        (``exec_skipped``), the forwards wait on disk for the next run."""
        self._stopping.set()
        self._jobs.put(None)
        if self._worker.is_alive():
            self._unless_now(self._worker.join)
        if self.forwarder is not None:
            self._unless_now(self.forwarder.stop)
            self.queue.end_run()  # every save has its queue row: the flusher is closed
        self.stopped_now = self.stop.now.is_set()
        if self.stopped_now:
            self.exec_skipped = sum(1 for job in list(self._jobs.queue) if job is not None)

    def _unless_now(self, wait: Callable[[], None]) -> None:
        """Run ``wait`` (a join), giving up on it once a stop *now* is asked."""
        if self.stop.now.is_set():
            return
        waiter = threading.Thread(target=wait, name="stop-wait", daemon=True)
        waiter.start()
        while waiter.is_alive():
            if self.stop.now.wait(0.1):
                return

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` answers: counts only, never an event's contents."""
        report: dict[str, Any] = {"status": "ok"}
        if self.queue is not None:
            counts = self.queue.counts()
            report["forward"] = {"waiting": counts["pending"], "delivered": counts["delivered"],
                                 "given_up": counts["given_up"]}
        return report

    # --- the forward queue -------------------------------------------------------------------

    def _queue_saved(self, batch: list[PendingSave]) -> None:
        """On the save thread, once the batch is on disk and before its 200s: queue it."""
        if self.queue.add((item.key, item.received_at) for item in batch):
            self.forwarder.wake()

    def _requeue_unrecorded(self) -> None:
        """Queue the events the previous forwarding run saved whose queue row a crash lost
        (saved and fsynced, but killed before the row was written: no 200 was sent, and
        CloudChat's retry is a duplicate of the saved file). Events saved by a run without
        ``--forward-to`` are left alone: ``webhook replay`` is for those."""
        start, end = self.queue.begin_run()
        missing = []
        for key in self.store.keys() - set(self.queue.states()):  # reads only those files
            saved = self.store.load(key)
            stamp = saved.meta.get("saved_at") if saved else None
            if isinstance(stamp, int | float) and start <= stamp <= end:
                missing.append((key, float(saved.meta.get("received_at") or stamp)))
        if missing:
            self.queue.add(missing)

    def retry_now(self) -> None:
        """SIGUSR1: the app is back, do not wait out the backoff (from any thread)."""
        if self.forwarder is not None:
            self.forwarder.retry_now()

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
        in flight until ``finish``: a retry arriving meanwhile is a 503 (the first copy's save
        may still fail), a retry after its 200 a duplicate.
        """
        now = time.time()
        cfg = self.config
        verified = False
        matched = None
        if cfg.verify:
            signature = headers.get(HEADER.lower())
            if not signature:
                return Delivery(now, 401, "rejected", f"missing {HEADER} header")
            try:
                matched = verify(cfg.secrets, body, signature)
                verified = matched is not None
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
            busy = not duplicate and key in self._inflight
            if not duplicate and not busy:
                self._inflight.add(key)
        if duplicate:
            return Delivery(now, 200, "duplicate", "already received (a retry)", event,
                            event_id, verified)
        if busy:
            return Delivery(now, 503, "rejected", "this event is being saved: retry later",
                            event, event_id, verified)
        return Accepted(now, key, body, headers, event, event_id, verified, matched)

    async def claim_shared(self, accepted: Accepted) -> Delivery | Any:
        """Claim an accepted event in the store shared with other replicas: the claim, or
        the answer when it is not ours to save (done elsewhere: a duplicate; being saved
        elsewhere, or the store unreachable: 503, so CloudChat retries)."""
        from cloudchat_cli.services.webhooks import dedupe

        a = accepted
        ns = self._namespaces[a.secret] if a.secret is not None else dedupe.namespace(None)
        try:
            claim = await self.dedupe.claim(ns, a.key, final=self.store is None)
        except dedupe.DedupeUnavailable as exc:
            self._forget(a.key)
            return Delivery(a.received_at, 503, "rejected", "the shared dedupe store is "
                            "unavailable: retry later", a.event, a.event_id, a.verified,
                            detail=exc.message)
        if claim.verdict == "new":
            return claim
        if claim.verdict == "done":
            return Delivery(a.received_at, 200, "duplicate", "already received (by another "
                            "replica)", a.event, a.event_id, a.verified)
        self._forget(a.key)
        return Delivery(a.received_at, 503, "rejected", "another replica is saving this event: "
                        "retry later", a.event, a.event_id, a.verified)

    async def settle_shared(self, claim: Any, delivery: Delivery) -> None:
        """After the save: mark the event done (200), or release the claim so CloudChat's
        retry is taken. If the store is gone now, the claim expires by itself."""
        from cloudchat_cli.services.webhooks.dedupe import DedupeUnavailable

        try:
            if delivery.status != 200:
                await self.dedupe.release(claim)
            elif claim.value != "done":
                await self.dedupe.done(claim)
        except DedupeUnavailable as exc:
            self.on_notice(f"{exc.message}; its claim expires by itself within "
                           f"{self.config.dedupe_claim_ttl:g} s")

    def to_save(self, accepted: Accepted, token: object = None) -> PendingSave:
        """The file ``--save`` writes for an accepted event (``self.store`` must be set)."""
        return self.store.pending(accepted.key, accepted.body,
                                  _meta(accepted.event_id, accepted.received_at,
                                        accepted.headers), token)

    def act(self, accepted: Accepted) -> Delivery | None:
        """Run ``on_event`` (opt-out keywords) before the save; if it fails, the answer: 500,
        and nothing saved or queued, so CloudChat's retry runs it again. (A retry after a
        failed save runs it twice: recording an opt-out again changes nothing.)"""
        if self.config.on_event is None:
            return None
        a = accepted
        try:
            self.config.on_event(a.event)
        except Exception as exc:  # noqa: BLE001 - a STOP not recorded must not get a 200
            detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            return self.shown(Delivery(time.time(), 500, "rejected", "could not act on the "
                                       "event (opt-out not recorded): retry later", a.event,
                                       a.event_id, a.verified, detail=detail))
        return None

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
        if self.config.exec_cmd:
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

    def finish(self, key: str, delivery: Delivery | None) -> None:
        """An accepted event's answer is decided (None: it failed): no longer in flight; after
        a 200 its retries are duplicates, after anything else they are handled again."""
        with self._seen_lock:
            self._inflight.discard(key)
            if delivery is not None and delivery.status == 200:
                self._seen.add(key)

    def _forget(self, key: str) -> None:
        with self._seen_lock:
            self._seen.discard(key)

    # --- after the answer: forward and exec --------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self.stop.now.is_set():  # stopping at once: leave it queued (counted)
                self._jobs.put(job)
                return
            self._exec(job)

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


# Shared stores (Redis URLs, often with a password): ours to use, not the command's.
_STORE_VARS = {"CLOUDCHAT_RATE_STORE", "CLOUDCHAT_WEBHOOK_DEDUPE_STORE"}


def _child_env(secrets: list[str]) -> dict[str, str]:
    """The environment for ``--exec``: ours, without the API key or the webhook secret (nor
    the files they are read from, nor any variable holding a secret in use: the Redis store
    URLs and any ``CLOUDCHAT_*`` URL carrying a password): the command gets the event, not
    the credentials."""
    hidden = {credentials.API_KEY.env, credentials.API_KEY.file_env,
              credentials.WEBHOOK_SECRET.env, credentials.WEBHOOK_SECRET.file_env,
              *_STORE_VARS}
    ours = environment.current().env
    return {k: v for k, v in ours.items() if k not in hidden and v not in secrets
            and not (k.startswith("CLOUDCHAT_") and _has_password(v))}


def _has_password(value: str) -> bool:
    """Whether ``value`` is a URL with a password (``redis://:pw@host``, ``?password=``)."""
    if "://" not in value:
        return False
    try:
        url = urlsplit(value.strip())
        return bool(url.password) or "password" in parse_qs(url.query)
    except ValueError:  # a malformed URL (e.g. a bad port) may still hold one: hide it
        return True


def _meta(event_id: object, received_at: float, headers: dict[str, str], **extra: str) -> dict:
    """What a saved event records besides its body: enough for ``verify --dir`` and replay."""
    return {"id": event_id, "received_at": received_at,
            "signature": headers.get(HEADER.lower()), **extra,
            "headers": {k: v for k, v in headers.items() if k in FORWARD_HEADERS}}
