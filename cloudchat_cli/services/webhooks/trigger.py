"""The ``webhook trigger`` use case: build, sign and POST one event the way CloudChat does.

A ``TriggerRequest`` in; each attempt goes to ``on_attempt`` as it happens (with the delay
before the next one, if any); a ``Triggered`` outcome out, whose ``failure`` names how the
receiver failed (the command maps it to an exit code). Waits between attempts use ``sleep``:
Ctrl-C there ends the command with 130 like any other wait (nothing is left half-done: the
event either reached the receiver or it did not, and the attempts so far were reported).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloudchat_cli.services.webhooks import events
from cloudchat_cli.services.webhooks.delivery import Attempt, check_url, deliver, webhook_headers


@dataclass
class TriggerRequest:
    url: str
    secret: str
    event: str = "message.received"
    channel: str = "whatsapp"  # as typed (an alias is resolved here)
    sets: list[str] = field(default_factory=list)  # data.text=Halo overrides
    retry: bool = True  # CloudChat's 2/4/8 s retries


@dataclass
class Triggered:
    url: str
    event: dict[str, Any]  # the body that was sent
    attempts: list[Attempt]

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]

    @property
    def delivered(self) -> bool:
        return self.last.ok

    @property
    def failure(self) -> str | None:
        """None when delivered; else ``network`` (no answer), ``server`` (5xx) or
        ``refused`` (any other status)."""
        if self.delivered:
            return None
        if self.last.status is None:
            return "network"
        return "server" if self.last.status >= 500 else "refused"

    def describe_failure(self) -> str:
        last = self.last
        answer = f"HTTP {last.status} {last.body}" if last.status is not None else str(last.error)
        return (f"{self.url} did not accept the event after {len(self.attempts)} attempt(s): "
                f"{answer}")


def check(url: str) -> None:
    """Refuse a URL that is not http(s) before a secret is looked up."""
    check_url(url)


def trigger(req: TriggerRequest, *,
            on_attempt: Callable[[Attempt, float | None], None] | None = None,
            sleep: Callable[[float], None] = time.sleep,
            send: Callable[..., list[Attempt]] = deliver) -> Triggered:
    """Build the event, sign it with ``req.secret`` and deliver it (retrying like CloudChat)."""
    from cloudchat_cli.services.messages import parse_channel

    check_url(req.url)
    body_obj = events.build_event(req.event, channel=parse_channel(req.channel), sets=req.sets)
    body = json.dumps(body_obj, ensure_ascii=False).encode()
    attempts = send(req.url, body, webhook_headers(req.secret, body, req.event),
                    retry=req.retry, on_attempt=on_attempt, sleep=sleep)
    return Triggered(req.url, body_obj, attempts)
