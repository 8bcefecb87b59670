"""Deliver a webhook the way CloudChat does: 5 s timeout, 3 retries on 5xx/timeout at 2, 4, 8 s.

Used by ``cloudchat webhook trigger`` and by the sandbox's webhook sender, so both follow the
vendor's policy exactly (docs/contract.md): the same body and event id on every attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from cloudchat_cli import __version__
from cloudchat_cli.core.deadline import NO_KEEPALIVE, exchange
from cloudchat_cli.core.errorbody import one_line
from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.webhooks.signature import HEADER, sign

TIMEOUT = 5.0  # per attempt, in total: connect, headers and body
RETRY_DELAYS = (2.0, 4.0, 8.0)
MAX_ANSWER = 64 * 1024  # of the receiver's answer, only a line is ever shown


def check_url(url: str) -> str:
    """An http(s) URL with a host, or a usage error (``file:///…`` is not a webhook endpoint)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"{one_line(url, 80)!r} is not an http:// or https:// URL",
                         hint="give the endpoint of your webhook receiver, e.g. "
                         "http://127.0.0.1:3000/hook")
    return url


@dataclass
class Attempt:
    number: int
    status: int | None  # None: no answer (timeout, refused)
    elapsed: float
    error: str | None = None
    body: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500


def webhook_headers(secret: str, body: bytes, event: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        HEADER: sign(secret, body),
        "User-Agent": f"CloudChat-Webhook (cloudchat-cli {__version__})",
    }
    if event:
        headers["X-CloudChat-Event"] = event
    return headers


def deliver(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    retry: bool = True,
    timeout: float = TIMEOUT,
    delays: tuple[float, ...] = RETRY_DELAYS,
    on_attempt: Callable[[Attempt, float | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    client: httpx.Client | None = None,
) -> list[Attempt]:
    """POST ``body`` until a 2xx, a non-retryable answer, or the retries run out."""
    own = client is None
    # No keep-alive: each attempt's connection is watched for the total deadline (the vendor
    # gives up after 5 s however the bytes trickle in), and a new connection is the vendor's
    # behaviour anyway.
    http = client or httpx.Client(timeout=timeout, limits=NO_KEEPALIVE)
    attempts: list[Attempt] = []
    try:
        for number in range(1, len(delays) + 2):
            started = time.monotonic()
            try:
                request = http.build_request("POST", url, content=body, headers=headers,
                                             timeout=timeout)
                done = exchange(http, request, timeout, MAX_ANSWER)
                attempt = Attempt(number, done.status, time.monotonic() - started,
                                  body=one_line(done.body.decode("utf-8", "replace"), 200))
            except httpx.TimeoutException:
                attempt = Attempt(number, None, time.monotonic() - started,
                                  f"no answer within {timeout:g} s")
            except httpx.HTTPError as exc:
                attempt = Attempt(number, None, time.monotonic() - started,
                                  one_line(str(exc) or type(exc).__name__, 200))
            attempts.append(attempt)
            again = retry and attempt.retryable and number <= len(delays)
            delay = delays[number - 1] if again else None
            if on_attempt:
                on_attempt(attempt, delay)
            if delay is None:
                return attempts
            sleep(delay)
    finally:
        if own:
            http.close()
    return attempts
