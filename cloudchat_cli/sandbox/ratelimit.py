"""The sandbox's limiter: a rolling window of admitted arrivals per key (docs/contract.md)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until the oldest counted arrival leaves the window

    def headers(self) -> dict[str, str]:
        reset = str(max(0, math.ceil(self.reset)))
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset,
        }
        if not self.allowed:
            headers["Retry-After"] = reset
        return headers


class RollingWindow:
    """Admit at most ``limit`` arrivals per key in any rolling ``window`` seconds.

    A rejected request (429) is not counted: counting it would let a client that retries
    eagerly lock itself out forever, and the contract only promises the window of arrivals
    the server accepted.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._arrivals: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> Decision:
        now = self.clock()
        with self._lock:
            arrivals = self._arrivals.setdefault(key, deque())
            while arrivals and arrivals[0] <= now - self.window:
                arrivals.popleft()
            if len(arrivals) >= self.limit:
                return Decision(False, self.limit, 0, arrivals[0] + self.window - now)
            arrivals.append(now)
            reset = arrivals[0] + self.window - now
            return Decision(True, self.limit, self.limit - len(arrivals), reset)
