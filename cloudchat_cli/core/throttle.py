"""Client-side rate limiting: a sliding-window log of slots (docs/architecture.md, "Throttle").

A slot is taken when a request is sent and held until its response arrives plus the window plus
a small margin. If at most N slots are ever held at once, the server can never see more than N
arrivals inside any rolling window, whatever the latency: for any N+1 arrivals inside one window,
each slot covers [arrival, arrival + window], so all N+1 would be held at the last arrival.
The price is a ceiling of N / (window + round trip) requests per second.

A broadcast may be given a ``Budget``: a share of the same window (at most ``limit`` of its own
slots held at once) and a spacing between its own sends. Its slots are ordinary slots of the
App's window, tagged with the budget's name, and a send must pass both checks in one atomic
decision — so the App's window is never exceeded, the broadcast never takes more than its
share, and the rest of the window stays free for everything else (a `cloudchat send`, other
machines) without queueing behind the broadcast's backlog or its spacing.

The bookkeeping lives in a ``SlotStore``; this module holds the policy and the in-memory store.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cloudchat_cli.core.errors import RateLimitWait

# How often a waiter re-checks while some slot is still in flight (its true expiry is unknown).
POLL = 0.05
# The longest spacing a budget may ask for (a day): stores forget older last-sends.
MAX_PACE = 86400.0
# How long a closed gate sleeps before looking at the clock again.
GATE_STEP = 5.0


def key_hash(api_key: str) -> str:
    """The name a key's window is stored under (a salted hash: never the key itself)."""
    return hashlib.sha256(b"cloudchat-throttle\0" + api_key.encode()).hexdigest()[:32]


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


@dataclass(frozen=True)
class Budget:
    """A broadcast's share of the App's window: ``limit`` of its slots, one send per ``pace`` s."""

    name: str  # [0-9a-z] only: it becomes part of a SQLite value and a Redis key
    limit: int
    pace: float = 0.0


class SlotStore(Protocol):
    """Where slots live: in memory (one process), SQLite (this machine) or Redis (every machine).

    Times are the caller's clock; ``now`` comes along so a store with its own clock (Redis)
    can turn them into durations.
    """

    where: str  # for people: "this process", "this machine (…)", "every machine using redis://…"

    def try_acquire(
        self, now: float, limit: int, hold_until: float, pace: float, settle: float,
        budget: Budget | None = None,
    ) -> tuple[int | None, tuple[float, float]]:
        """Take a slot if fewer than ``limit`` are held and no block or pacing applies (and,
        with a budget, fewer than its limit are its own and its spacing has passed).

        Returns (slot id, _) on success, else (None, (when to look again, estimated free time)).
        """

    def release(self, slot: int, expires_at: float, now: float,
                budget: Budget | None = None) -> None: ...

    def mark_sent(self, budget: Budget, now: float) -> None:
        """The budget's request goes out now: its spacing counts from here (never earlier)."""

    def block(self, until: float, now: float) -> None: ...

    def state(self, now: float, limit: int) -> WindowState: ...

    def set_pacing(self, on: bool) -> None:
        """A process fell back to even pacing. Pacing is that process's own setting and ends
        with it, so `limits` must not say "pacing on" forever: the memory and SQLite stores
        report it while requests sent with a pace are in the window (``try_acquire`` with
        ``pace`` renews it) and clear it once the window is empty; the Redis store's flag
        expires with its other metadata (``META_GRACE`` after the last slot)."""


def next_try(
    now: float,
    limit: int,
    slots: list[tuple[float, bool]],
    blocked_until: float,
    paced_until: float,
    settle: float,
) -> tuple[float, float] | None:
    """The one decision both stores share, from the live slots as (expiry, in flight).

    Returns None when a slot may be taken now, else (when to look again, when a slot is
    expected to be free). ``settle`` is when an in-flight slot would expire if its response
    came now: the estimate uses it, the guarantee does not.
    """
    other = max((t for t in (blocked_until, paced_until) if t > now), default=0.0)
    if len(slots) >= limit:
        k = len(slots) - limit
        slot_free = sorted(e for e, _ in slots)[k]
        estimate = sorted(min(e, settle) if f else e for e, f in slots)[k]
    else:
        slot_free = estimate = 0.0
    if max(other, slot_free) <= now:
        return None
    eta = max(other, estimate)
    if slot_free > other and any(f for _, f in slots):
        # An in-flight slot may be released (and get an earlier expiry) at any moment.
        return max(other, min(slot_free, now + POLL)), eta
    return max(other, slot_free), eta


def decide(
    now: float,
    limit: int,
    slots: list[tuple[float, bool]],
    blocked_until: float,
    paced_until: float,
    settle: float,
    own: tuple[int, list[tuple[float, bool]], float] | None = None,
) -> tuple[float, float] | None:
    """``next_try`` for the App's window and, given ``own`` = (budget limit, the budget's own
    live slots, its paced-until), for the budget's share too: a slot only when both allow."""
    shared = next_try(now, limit, slots, blocked_until, paced_until, settle)
    if own is None:
        return shared
    mine = next_try(now, own[0], own[1], 0.0, own[2], settle)
    waits = [d for d in (shared, mine) if d is not None]
    if not waits:
        return None
    # Each retry time is the earliest its own check could pass: the later one for both.
    return max(r for r, _ in waits), max(e for _, e in waits)


class MemoryStore:
    """Slots of this process only (tests, and the reference model for the SQLite store)."""

    where = "this process only"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # id -> (expiry, in flight, budget name or "")
        self._slots: dict[int, tuple[float, bool, str]] = {}
        self._next_id = 1
        self._blocked_until = 0.0
        self._last_sent = 0.0
        self._budget_sent: dict[str, float] = {}
        self._pacing = False

    def _live(self, now: float, owner: str | None = None) -> list[tuple[float, bool]]:
        self._slots = {k: v for k, v in self._slots.items() if v[0] > now}
        if not self._slots:
            self._pacing = False  # see SlotStore.set_pacing
        return [(e, f) for e, f, o in self._slots.values() if owner is None or o == owner]

    def try_acquire(self, now, limit, hold_until, pace, settle, budget=None):
        with self._lock:
            own = None
            if budget is not None:
                sent = self._budget_sent.get(budget.name)
                own = (budget.limit, self._live(now, budget.name),
                       sent + budget.pace if budget.pace and sent is not None else 0.0)
            decision = decide(
                now,
                limit,
                self._live(now),
                self._blocked_until,
                self._last_sent + pace if pace else 0.0,
                settle,
                own,
            )
            if decision is not None:
                return None, decision
            slot = self._next_id
            self._next_id += 1
            self._slots[slot] = (hold_until, True, budget.name if budget else "")
            self._last_sent = now
            self._pacing = self._pacing or bool(pace)
            if budget is not None:
                self._budget_sent[budget.name] = now
            return slot, (0.0, 0.0)

    def release(self, slot, expires_at, now=None, budget=None):
        with self._lock:
            if slot in self._slots:
                self._slots[slot] = (expires_at, False, self._slots[slot][2])

    def mark_sent(self, budget, now):
        with self._lock:
            self._budget_sent[budget.name] = max(now, self._budget_sent.get(budget.name, now))

    def block(self, until, now=None):
        with self._lock:
            self._blocked_until = max(self._blocked_until, until)

    def set_pacing(self, on):
        with self._lock:
            self._pacing = on

    def state(self, now, limit):
        with self._lock:
            live = self._live(now)
            expiries = sorted(e for e, _ in live)
            return WindowState(
                limit=limit,
                used=len(live),
                next_free_at=expiries[len(expiries) - limit] if len(expiries) >= limit else None,
                blocked_until=self._blocked_until if self._blocked_until > now else 0.0,
                in_flight=sum(1 for _, f in live if f),
                pacing=self._pacing,
            )


class Throttle:
    """At most ``limit`` requests in any rolling ``window`` seconds, as seen by the server."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        store: SlotStore | None = None,
        margin: float = 0.25,
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
        # Set for a broadcast: its share of the window, and when it may not send at all
        # (``gate(now)`` gives the time sending may resume, or None; ``on_pause`` hears of it).
        self.budget: Budget | None = None
        self.gate: Callable[[float], float | None] | None = None
        self.on_pause: Callable[[float | None], None] | None = None

    def try_acquire(self) -> tuple[int | None, float, float]:
        """One attempt: (slot, 0, 0) or (None, when to look again, estimated free time)."""
        now = self.clock()
        # Until its response is seen, a slot is held for the longest it could need.
        hold = now + self.timeout + self.window + self.margin
        settle = now + self.window + self.margin
        if self.budget is None:  # (stores written before budgets take no such argument)
            slot, (retry_at, eta) = self.store.try_acquire(
                now, self.limit, hold, self.pace, settle)
        else:
            slot, (retry_at, eta) = self.store.try_acquire(
                now, self.limit, hold, self.pace, settle, budget=self.budget)
        return slot, retry_at, eta

    def _wait_gate(self) -> None:
        """Sleep while the gate is closed (quiet hours, a later start), in short steps: a
        changed clock (a suspended laptop) is noticed, and ``on_pause`` hears each step (so
        a progress line's remaining time moves on)."""
        paused = False
        while self.gate is not None:
            now = self.clock()
            until = self.gate(now)
            if until is None or until <= now:
                break
            if self.on_pause:
                self.on_pause(until)
            paused = True
            self.sleep(min(until - now, GATE_STEP))
        if paused and self.on_pause:
            self.on_pause(None)

    def acquire(
        self,
        *,
        wait: bool = True,
        on_wait: Callable[[float], None] | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> int:
        """Take a slot, sleeping until one frees; ``on_wait(seconds)`` hears of a wait once."""
        waited = False
        while True:
            self._wait_gate()
            slot, retry_at, eta = self.try_acquire()
            if slot is not None:
                if waited and on_done:
                    on_done()
                return slot
            now = self.clock()
            if not wait:
                raise RateLimitWait(
                    f"rate limit reached ({self.limit} per {self.window:g} s); "
                    f"next slot in about {max(0.0, eta - now):.1f} s",
                    hint="run again later, or drop --no-wait to queue for a slot",
                )
            if not waited and on_wait:
                on_wait(max(0.0, eta - now))
            waited = True
            self.sleep(max(0.0, retry_at - now))

    def sent(self) -> None:
        """A budgeted request leaves now (after the caller's own bookkeeping, such as a
        journal write): its spacing counts from this moment, so the time that bookkeeping
        took cannot bring two requests closer than the spacing."""
        if self.budget is not None and self.budget.pace:
            self.store.mark_sent(self.budget, self.clock())

    def release(self, slot: int) -> None:
        """The response arrived, or the request timed out (so it may still have arrived just
        now): either way the slot is held one more window from this moment."""
        now = self.clock()
        if self.budget is None:
            self.store.release(slot, now + self.window + self.margin, now)
        else:
            self.store.release(slot, now + self.window + self.margin, now, budget=self.budget)

    def block(self, seconds: float) -> None:
        """A 429 was answered: nobody using this key sends for ``seconds``."""
        now = self.clock()
        self.store.block(now + seconds, now)

    def even_pacing(self) -> None:
        """Fall back to one request per window/limit (for servers stricter than announced)."""
        self.pace = self.window / self.limit
        self.store.set_pacing(True)

    def state(self) -> WindowState:
        return self.store.state(self.clock(), self.limit)
