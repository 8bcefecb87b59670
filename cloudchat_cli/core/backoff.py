"""Retry decisions: which responses to retry, and how long to wait before the next attempt.

Pure functions of (attempt, headers, clock, random), so they are tested without a network.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff (base 2 s, the vendor's own policy), bounded two ways."""

    max_retries: int = 4
    base: float = 2.0
    cap: float = 60.0
    max_total_wait: float = 300.0

    def backoff(self, retry: int, rng: Callable[[], float] = _random.random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)) for the ``retry``-th retry."""
        return rng() * min(self.cap, self.base * (2**retry))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def server_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait, from ``Retry-After`` or ``X-RateLimit-Reset``.

    ``Retry-After`` is seconds or an HTTP date; ``X-RateLimit-Reset`` is seconds, or an epoch
    time when above 10^9. Unparseable or negative values are ignored, not trusted.
    """
    retry_after = _header(headers, "Retry-After")
    if retry_after:
        value = retry_after.strip()
        try:
            seconds = float(value)
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
        except ValueError:
            from email.utils import parsedate_to_datetime  # rare; the email package is slow

            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None and when.tzinfo is not None:
                return max(0.0, when.timestamp() - now)
    reset = _header(headers, "X-RateLimit-Reset")
    if reset:
        try:
            seconds = float(reset.strip())
        except ValueError:
            return None
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return max(0.0, seconds - now) if seconds > 1e9 else seconds
    return None


def retry_delay(
    policy: RetryPolicy,
    retry: int,
    status: int,
    headers: Mapping[str, str],
    now: float,
    rng: Callable[[], float] = _random.random,
) -> float:
    """How long to wait before retry number ``retry`` (0-based) after ``status``.

    A wait the server asks for is returned as asked, never shortened: retrying earlier than
    ``Retry-After`` only spends a request on another 429. The caller decides whether the
    wait fits its budget.
    """
    if status == 429:
        asked = server_wait(headers, now)
        if asked is not None:
            return asked
    return policy.backoff(retry, rng)
