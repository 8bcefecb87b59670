"""The sandbox's webhook sender: signed events per the vendor policy (docs/contract.md).

For every accepted message: ``message.status`` sent → delivered → read (or sent → failed for
WhatsApp numbers ending in 9999). ``POST /_sandbox/inbound`` emits a ``message.received``.
Each event is delivered with a 5 s timeout and retried on 5xx/timeout at 2, 4 and 8 s with the
same id and body, signed with the App's webhook secret. Signing and delivery are the sandbox's
own code, not the client's (``services/webhooks``), so the two cannot share a bug.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cloudchat_cli import __version__
from cloudchat_cli.sandbox.jsonbody import dumps

FAILING_SUFFIX = "9999"
TIMEOUT = 5.0


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: lowercase hex HMAC-SHA256 of the exact body bytes.

    The sandbox's own implementation of the contract, deliberately not the client's: a bug in
    either is then caught by the other (``webhook verify``/``listen`` check what this signs).
    """
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        status_delay: float = 0.2,
        new_id: Callable[[str], str],
        log: Callable[[str], None] = lambda line: None,
        delays: tuple[float, ...] = (2.0, 4.0, 8.0),
    ):
        self.url = url
        self.secret = secret
        self.status_delay = status_delay
        self.new_id = new_id
        self.log = log
        self.delays = delays
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook")
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _event(self, name: str, channel: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"event": name, "id": self.new_id("evt"), "timestamp": int(time.time()),
                "channel": channel, "session_id": str(uuid.uuid5(uuid.NAMESPACE_URL, channel)),
                "data": data}

    def _send(self, event: dict[str, Any]) -> bool:
        """Deliver one event: 5 s timeout, retried on 5xx/timeout after each of ``delays``."""
        import httpx

        body = dumps(event, separators=(", ", ": ")).encode()
        headers = {"Content-Type": "application/json", "X-CloudChat-Signature": sign(
            self.secret, body), "X-CloudChat-Event": event["event"],
            "User-Agent": f"CloudChat-Webhook (cloudchat-cli sandbox {__version__})"}
        with httpx.Client(timeout=TIMEOUT) as client:
            for number in range(1, len(self.delays) + 2):
                try:
                    status: int | None = client.post(self.url, content=body,
                                                     headers=headers).status_code
                    what = f"HTTP {status}"
                except httpx.TimeoutException:
                    status, what = None, f"no answer within {TIMEOUT:g} s"
                except httpx.HTTPError as exc:
                    status, what = None, " ".join((str(exc) or type(exc).__name__).split())[:200]
                retry = (status is None or status >= 500) and number <= len(self.delays)
                delay = self.delays[number - 1] if retry else None
                self.log(f"webhook {event['event']} {event['id']} attempt {number}: {what}"
                         + (f", retry in {delay:g} s" if delay else ""))
                if delay is None:
                    return status is not None and 200 <= status < 300
                if self._stop.wait(delay):
                    return False
        return False

    def message_accepted(self, message: dict[str, Any]) -> None:
        """Queue the status chain of an accepted message."""
        self._pool.submit(self._status_chain, message)

    def _status_chain(self, message: dict[str, Any]) -> None:
        fails = message["channel"] == "whatsapp" and message["to"].endswith(FAILING_SUFFIX)
        steps = ["sent", "failed"] if fails else ["sent", "delivered", "read"]
        for status in steps:
            if self._stop.wait(self.status_delay):
                return
            data: dict[str, Any] = {"message_id": message["id"], "status": status}
            if status == "failed":
                data["error"] = "recipient unreachable (sandbox: numbers ending in 9999)"
            self._send(self._event("message.status", message["channel"], data))

    def inbound(self, channel: str, sender: str, text: str, push_name: str | None) -> str:
        """Emit a message.received; returns its event id."""
        event = self._event("message.received", channel, {
            "from": sender, "pushName": push_name, "text": text, "media": None})
        self._pool.submit(self._send, event)
        return event["id"]
