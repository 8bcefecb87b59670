"""The sliding-window throttle: decisions, waits, and the window guarantee under any schedule."""

import bisect

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudchat_cli.core.errors import RateLimitWait
from cloudchat_cli.core.throttle import Budget, MemoryStore, Throttle, next_try
from cloudchat_cli.core.throttle_sqlite import SqliteStore, key_hash

from .fakes import FakeClock


def make(limit=2, window=10.0, margin=0.0, timeout=5.0, store=None, clock=None):
    clock = clock or FakeClock(0)
    return Throttle(limit, window, store=store or MemoryStore(), margin=margin, timeout=timeout,
                    clock=clock, sleep=clock.sleep), clock


def test_next_try_free_full_blocked_paced():
    assert next_try(0, 2, [(5, False)], 0, 0, 10) is None
    assert next_try(0, 2, [(5, False), (7, False)], 0, 0, 10) == (5, 5)
    assert next_try(0, 2, [(5, False), (7, False)], 9, 0, 10) == (9, 9)
    assert next_try(0, 1, [], 0, 3, 10) == (3, 3)
    # an in-flight slot: look again soon, but estimate from its settle time
    retry, eta = next_try(0, 1, [(40, True)], 0, 0, 10)
    assert retry == pytest.approx(0.05) and eta == 10


def test_slot_held_until_response_plus_window():
    throttle, clock = make(limit=1, window=10, margin=0.5)
    slot = throttle.acquire()
    clock.advance(3)  # 3 s of latency
    throttle.release(slot)
    assert throttle.state().next_free_at == pytest.approx(13.5)
    throttle.acquire()
    assert clock.now == pytest.approx(13.5)


def test_waits_report_once_and_done():
    throttle, clock = make(limit=1, window=10)
    throttle.release(throttle.acquire())
    events = []
    throttle.acquire(on_wait=lambda s: events.append(("wait", s)),
                     on_done=lambda: events.append(("done",)))
    assert events == [("wait", 10.0), ("done",)]


def test_no_wait_raises_exit_5():
    throttle, _ = make(limit=1)
    throttle.acquire()
    with pytest.raises(RateLimitWait) as info:
        throttle.acquire(wait=False)
    assert info.value.exit_code == 5


def test_block_and_even_pacing():
    throttle, clock = make(limit=10, window=10)
    throttle.block(7)
    throttle.acquire()
    assert clock.now == pytest.approx(7)
    throttle.even_pacing()
    throttle.acquire()
    assert clock.now == pytest.approx(8)  # one per window/limit = 1 s
    assert throttle.state().pacing


def test_sqlite_store_is_shared_and_named_by_hash(tmp_path):
    clock = FakeClock(0)
    path = tmp_path / f"{key_hash('sk_live_x')}.sqlite3"
    a, _ = make(limit=2, store=SqliteStore(path, window=10, margin=0), clock=clock)
    b, _ = make(limit=2, store=SqliteStore(path, window=10, margin=0), clock=clock)
    a.acquire()
    b.acquire()
    slot, _, eta = a.try_acquire()
    assert slot is None
    b.block(30)
    assert a.state().blocked_until == pytest.approx(30)
    assert "sk_live_x" not in path.name and (path.stat().st_mode & 0o777) == 0o600


def test_sqlite_unwritable_state_is_a_clear_error(tmp_path):
    from cloudchat_cli.core.errors import CloudChatError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CloudChatError, match="cannot open the rate-limit state"):
        SqliteStore(blocker / "sub" / "x.sqlite3", window=10, margin=0)


# --- the guarantee, under any interleaving ------------------------------------------------------

LIMIT, WINDOW, TIMEOUT = 3, 10.0, 4.0

# Edges (arrival at send or at response; advances near the window) are where bugs live.
fractions = st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1))
delays = st.one_of(st.sampled_from([0.5, 1.0, 3.9, 4.0, 9.0, 9.5, 10.0]), st.floats(0, 2 * WINDOW))
actions = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 3)),
        st.tuples(st.just("respond"), st.integers(0, 50), fractions),
        st.tuples(st.just("crash"), st.integers(0, 50), fractions),
        st.tuples(st.just("advance"), delays),
        st.tuples(st.just("stamp"), st.integers(0, 50)),
    ),
    min_size=10,
    max_size=120,
)


def simulate(store_factory, steps, clock=None, budget=None):
    """Four simulated processes share one store; check every server-side rolling window.

    With a ``budget``, processes 0 and 1 are a broadcast's workers spending it (its share of
    the window and its spacing are checked too); 2 and 3 stay outside it."""
    clock = clock or FakeClock(0)
    store = store_factory()
    procs = [Throttle(LIMIT, WINDOW, store=store, margin=0.0, timeout=TIMEOUT, clock=clock,
                      sleep=clock.sleep) for _ in range(4)]
    if budget is not None:
        procs[0].budget = procs[1].budget = budget
    flying: list[tuple[int, int, float]] = []  # (process, slot, sent at)
    arrivals: list[float] = []
    own_arrivals: list[float] = []
    own_sends: list[float] = []

    def finish(i: int, frac: float, release: bool) -> None:
        proc, slot, sent = flying.pop(i)
        arrival = sent + frac * (clock.now - sent)  # it reached the server meanwhile
        arrivals.append(arrival)
        if procs[proc].budget is not None:
            own_arrivals.append(arrival)
        if release:
            procs[proc].release(slot)

    stamps: list[float] = []  # when a budgeted request said it was leaving (Throttle.sent)

    for step in steps:
        if step[0] == "acquire":
            slot, _, _ = procs[step[1]].try_acquire()
            if slot is not None:
                flying.append((step[1], slot, clock.now))
                if procs[step[1]].budget is not None:
                    if budget is not None and stamps:
                        assert clock.now >= stamps[-1] + budget.pace - 1e-9, "spaced from stamp"
                    own_sends.append(clock.now)
        elif step[0] == "stamp" and flying:
            proc = flying[step[1] % len(flying)][0]
            procs[proc].sent()
            if procs[proc].budget is not None and procs[proc].budget.pace:
                stamps.append(clock.now)
        elif step[0] in ("respond", "crash") and flying:
            finish(step[1] % len(flying), step[2], release=step[0] == "respond")
        elif step[0] == "advance":
            target = clock.now + step[1]
            # Requests time out at sent + TIMEOUT: release them at that moment, in order.
            while True:
                due = [(s + TIMEOUT, i) for i, (_, _, s) in enumerate(flying)
                       if s + TIMEOUT <= target]
                if not due:
                    break
                when, i = min(due)
                clock.now = max(clock.now, when)
                finish(i, 1.0, release=True)
            clock.now = target
    arrivals.extend(s for _, _, s in flying)  # still in flight: they may arrive at once
    own_arrivals.extend(s for p, _, s in flying if procs[p].budget is not None)
    check_window(arrivals, LIMIT)
    if budget is not None:
        check_window(own_arrivals, budget.limit)
        gaps = [b - a for a, b in zip(own_sends, own_sends[1:], strict=False)]
        assert all(g >= budget.pace - 1e-9 for g in gaps), f"spacing broken: {own_sends}"


def check_window(arrivals: list[float], limit: int) -> None:
    arrivals = sorted(arrivals)
    for j, a in enumerate(arrivals):
        # (a - W, a], with 1 ns for float rounding: (t + W) - W can land just below t
        inside = j + 1 - bisect.bisect_right(arrivals, a - WINDOW + 1e-9)
        assert inside <= limit, f"{inside} arrivals in the window ending at {a}: {arrivals}"


budgets = st.builds(Budget, st.just("b0"), st.integers(1, LIMIT),
                    st.sampled_from([0.0, 1.0, 2.5, WINDOW / 2]))


@settings(max_examples=500, deadline=None)
@given(actions, budgets)
def test_window_and_budget_never_exceeded_memory(steps, budget):
    simulate(MemoryStore, steps, budget=budget)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions, budget=budgets)
def test_window_and_budget_never_exceeded_sqlite(tmp_path, steps, budget):
    counter = iter(range(10**9))
    simulate(lambda: SqliteStore(tmp_path / f"b{next(counter)}-{id(steps)}.sqlite3",
                                 window=WINDOW, margin=0.0), steps, budget=budget)


def test_budget_leaves_the_rest_of_the_window_to_others():
    """A broadcast spending its share waits; a send outside it is served at once."""
    clock = FakeClock(0)
    store = MemoryStore()
    broadcast = Throttle(5, 10, store=store, margin=0, clock=clock, sleep=clock.sleep)
    broadcast.budget = Budget("bc", 2, pace=1.0)
    other = Throttle(5, 10, store=store, margin=0, clock=clock, sleep=clock.sleep)
    first, _, _ = broadcast.try_acquire()
    assert first is not None
    refused, retry_at, _ = broadcast.try_acquire()  # its spacing: not before t=1
    assert refused is None and retry_at == 1.0
    assert other.try_acquire()[0] is not None  # not held back by the broadcast's spacing
    broadcast.release(first)  # answered at once: held until t=10
    clock.advance(1.0)
    second = broadcast.try_acquire()[0]
    assert second is not None
    broadcast.release(second)  # held until t=11
    clock.advance(1.0)
    refused, retry_at, _ = broadcast.try_acquire()  # its share (2) is spent until t=10
    assert refused is None and retry_at == 10.0
    assert other.try_acquire()[0] is not None and other.try_acquire()[0] is not None
    assert other.try_acquire()[0] is None  # the App's window (5) is full: 2 + 3


def test_budget_slots_are_shared_by_processes_of_one_broadcast(tmp_path):
    clock = FakeClock(0)
    path = tmp_path / "w.sqlite3"
    one, two = (Throttle(10, 10, store=SqliteStore(path, window=10, margin=0), margin=0,
                         clock=clock, sleep=clock.sleep) for _ in range(2))
    one.budget = two.budget = Budget("same", 1)
    assert one.try_acquire()[0] is not None
    assert two.try_acquire()[0] is None
    two.budget = Budget("another", 1)
    assert two.try_acquire()[0] is not None


def test_gate_pauses_before_taking_a_slot():
    clock = FakeClock(0)
    t = Throttle(5, 10, clock=clock, sleep=clock.sleep)
    heard = []
    t.gate = lambda now: 100.0 if now < 100 else None
    t.on_pause = heard.append
    t.acquire()
    assert clock.now == 100.0 and heard[-1] is None and set(heard[:-1]) == {100.0}
    assert max(clock.sleeps) <= 5.0  # it looks at the clock again every few seconds


@settings(max_examples=500, deadline=None)
@given(actions)
def test_window_never_exceeded_memory(steps):
    simulate(MemoryStore, steps)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
def test_window_never_exceeded_sqlite(tmp_path, steps):
    counter = iter(range(10**9))
    simulate(lambda: SqliteStore(tmp_path / f"t{next(counter)}-{id(steps)}.sqlite3",
                                 window=WINDOW, margin=0.0), steps)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_pacing_is_reported_while_paced_requests_are_in_the_window_then_cleared(tmp_path, kind):
    """`limits` said "pacing on" forever: the flag outlived the process that paced."""
    store = (MemoryStore() if kind == "memory"
             else SqliteStore(tmp_path / "p.sqlite3", window=10, margin=0))
    paced, clock = make(limit=10, window=10, store=store)
    other, _ = make(limit=10, window=10, store=store, clock=clock)  # another process, not pacing
    paced.release(paced.acquire())
    assert not paced.state().pacing
    paced.even_pacing()
    paced.release(paced.acquire())  # at t=1 (one per window/limit)
    assert paced.state().pacing and other.state().pacing
    clock.advance(9.5)  # t=10.5: the slot sent at t=1 is still in the window
    assert other.state().pacing
    clock.advance(1)  # t=11.5: every slot has expired, nobody is pacing any more
    assert not other.state().pacing
    other.release(other.acquire())  # a request that does not pace does not bring it back
    assert not other.state().pacing
    paced.release(paced.acquire())  # the pacing process sends again: reported again
    assert other.state().pacing


def test_the_sqlite_window_keeps_a_small_write_ahead_log(tmp_path):
    """A few KB of live state had a log growing to 4 MiB (SQLite's default checkpoint), the
    first file to hit a full disk or a file-size limit during a broadcast."""
    import os

    from cloudchat_cli.core.throttle_sqlite import WAL_PAGES

    path = tmp_path / "w.sqlite3"
    throttle, _ = make(limit=10_000, window=1, store=SqliteStore(path, window=1, margin=0))
    for _ in range(20 * WAL_PAGES):
        throttle.release(throttle.acquire())
    assert os.path.getsize(f"{path}-wal") <= 2 * WAL_PAGES * 4096
