"""Client-side rate limiting: a sliding-window log of slots (DESIGN.md, "Throttle").

A slot is taken when a request is sent and held until its response arrives plus the window plus
a small margin. If at most N slots are ever held at once, the server can never see more than N
arrivals inside any rolling window, whatever the latency: for any N+1 arrivals inside one window,
each slot covers [arrival, arrival + window], so all N+1 would be held at the last arrival.
The price is a ceiling of N / (window + round trip) requests per second.

The bookkeeping lives in a ``SlotStore``; this module holds the policy and the in-memory store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cloudchat_cli.core.errors import RateLimitWait

# How often a waiter re-checks while some slot is still in flight (its true expiry is unknown).
POLL = 0.05


@dataclass(frozen=True)
class WindowState:
    """A snapshot of the key's window, for ``cloudchat limits`` and for waiting decisions."""

    limit: int
    used: int
    next_free_at: float | None  # when the earliest held slot expires (None: a slot is free)
    blocked_until: float  # 0 when no 429 block is active
    in_flight: int = 0
    pacing: bool = False

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)


class SlotStore(Protocol):
    """Where slots live: in memory (one process) or in SQLite (every process using the key)."""

    def try_acquire(self, now: float, limit: int, hold_until: float, pace: float) -> tuple[
        int | None, float
    ]:
        """Take a slot if fewer than ``limit`` are held and no block applies.

        Returns (slot id, 0) on success, else (None, the earliest time worth trying again).
        """

    def release(self, slot: int, expires_at: float) -> None: ...

    def block(self, until: float) -> None: ...

    def state(self, now: float, limit: int) -> WindowState: ...

    def set_pacing(self, on: bool) -> None: ...


class MemoryStore:
    """Slots of this process only (used by tests and as the store's reference model)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[int, tuple[float, float, bool]] = {}  # id -> (taken, expiry, flying)
        self._next_id = 1
        self._blocked_until = 0.0
        self._last_sent = 0.0
        self._pacing = False

    def try_acquire(self, now, limit, hold_until, pace):
        with self._lock:
            self._slots = {k: v for k, v in self._slots.items() if v[1] > now}
            retry_at = _next_try(
                now,
                limit,
                [v[1] for v in self._slots.values()],
                any(v[2] for v in self._slots.values()),
                self._blocked_until,
                self._last_sent + pace if pace else 0.0,
            )
            if retry_at is not None:
                return None, retry_at
            slot = self._next_id
            self._next_id += 1
            self._slots[slot] = (now, hold_until, True)
            self._last_sent = now
            return slot, 0.0

    def release(self, slot, expires_at):
        with self._lock:
            if slot in self._slots:
                self._slots[slot] = (self._slots[slot][0], expires_at, False)

    def block(self, until):
        with self._lock:
            self._blocked_until = max(self._blocked_until, until)

    def set_pacing(self, on):
        with self._lock:
            self._pacing = on

    def state(self, now, limit):
        with self._lock:
            live = [v for v in self._slots.values() if v[1] > now]
            return WindowState(
                limit=limit,
                used=len(live),
                next_free_at=min(v[1] for v in live) if len(live) >= limit else None,
                blocked_until=self._blocked_until if self._blocked_until > now else 0.0,
                in_flight=sum(1 for v in live if v[2]),
                pacing=self._pacing,
            )


def _next_try(
    now: float,
    limit: int,
    expiries: list[float],
    any_in_flight: bool,
    blocked_until: float,
    paced_until: float,
) -> float | None:
    """Shared decision: None when a slot may be taken now, else when to look again."""
    waits = []
    if blocked_until > now:
        waits.append(blocked_until)
    if paced_until > now:
        waits.append(paced_until)
    if len(expiries) >= limit:
        earliest = sorted(expiries)[len(expiries) - limit]
        # An in-flight slot may be released (and get an earlier expiry) at any moment.
        waits.append(min(earliest, now + POLL) if any_in_flight else earliest)
    return max(waits) if waits else None


class Throttle:
    """At most ``limit`` requests in any rolling ``window`` seconds, as seen by the server."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        store: SlotStore | None = None,
        margin: float = 0.5,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.limit = limit
        self.window = window
        self.margin = margin
        self.timeout = timeout
        self.store = store or MemoryStore()
        self.clock = clock
        self.sleep = sleep
        self.pace = 0.0

    def acquire(
        self, *, wait: bool = True, on_wait: Callable[[float], None] | None = None
    ) -> int:
        """Take a slot, sleeping until one frees; ``on_wait(seconds)`` is told of each wait."""
        while True:
            now = self.clock()
            # Until its response is seen, a slot is held for the longest it could need.
            hold = now + self.timeout + self.window + self.margin
            slot, retry_at = self.store.try_acquire(now, self.limit, hold, self.pace)
            if slot is not None:
                return slot
            delay = max(0.0, retry_at - now)
            if not wait:
                raise RateLimitWait(
                    f"rate limit reached ({self.limit} per {self.window:g} s); "
                    f"next slot in {delay:.1f} s",
                    hint="run again later, or drop --no-wait to queue for a slot",
                )
            if on_wait:
                on_wait(delay)
            self.sleep(delay)

    def release(self, slot: int, *, timed_out: bool = False) -> None:
        """The response arrived (or the request timed out): hold the slot one more window."""
        self.store.release(slot, self.clock() + self.window + self.margin)

    def block(self, seconds: float) -> None:
        """A 429 was answered: nobody using this key sends for ``seconds``."""
        self.store.block(self.clock() + seconds)

    def even_pacing(self) -> None:
        """Fall back to one request per window/limit (for servers stricter than announced)."""
        self.pace = self.window / self.limit
        self.store.set_pacing(True)

    def state(self) -> WindowState:
        return self.store.state(self.clock(), self.limit)
