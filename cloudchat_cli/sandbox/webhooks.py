"""The sandbox's webhook sender: signed events per the vendor policy (API.md).

For every accepted message: ``message.status`` sent → delivered → read (or sent → failed for
WhatsApp numbers ending in 9999). ``POST /_sandbox/inbound`` emits a ``message.received``.
Each event is delivered with a 5 s timeout and retried on 5xx/timeout at 2, 4 and 8 s with the
same id and body, signed with the App's webhook secret.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

FAILING_SUFFIX = "9999"


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
        from cloudchat_cli.services.webhooks.delivery import deliver, webhook_headers

        body = json.dumps(event, ensure_ascii=False).encode()

        def wait(seconds: float) -> None:
            if self._stop.wait(seconds):
                raise InterruptedError

        def shown(attempt, delay) -> None:
            what = f"HTTP {attempt.status}" if attempt.status else attempt.error
            retry = f", retry in {delay:g} s" if delay else ""
            self.log(f"webhook {event['event']} {event['id']} attempt {attempt.number}: "
                     f"{what}{retry}")

        try:
            attempts = deliver(self.url, body, webhook_headers(self.secret, body, event["event"]),
                               delays=self.delays, on_attempt=shown, sleep=wait)
        except InterruptedError:
            return False
        return attempts[-1].ok

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
