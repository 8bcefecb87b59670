"""The Redis SlotStore against a real redis-server: same policy, server clock, keys, failure."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudchat_cli.core import redisurl
from cloudchat_cli.core.errors import ExitCode, NetworkError, UsageError
from cloudchat_cli.core.throttle import Throttle, decide, key_hash, next_try

from .fakes import FakeClock
from .test_throttle import WINDOW, actions, budgets, simulate

KEY = "sk_live_redis_secret_0123456789abcdef"


def store_for(server, *, key=KEY, window=WINDOW, margin=0.0, clock=None, url=None):
    from cloudchat_cli.core.throttle_redis import RedisStore, connect

    url = url or server.url
    return RedisStore(connect(url), key, url=url, window=window, margin=margin,
                      server_clock=clock)


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "local", "LOCAL", "redis://127.0.0.1:6379/0", "redis://h", "rediss://u:p@cache.example:6380/2",
    "unix:///run/redis.sock", "unix://:pw@/run/redis.sock?db=3", "redis://[::1]:6379/1",
])
def test_rate_store_urls_accepted(url):
    assert redisurl.parse_store(url) == (url if url != "LOCAL" else "local")


@pytest.mark.parametrize("url", [
    "", "sqlite:///x", "http://h:6379", "redis://", "redis://:hunter2@h:notaport/0",
    "redis://:hunter2@h:6379/zero", "unix://", "redis://h:6379/0 ", "redis://h\n:6379",
    "redis://h x:6379", 6379,
])
def test_rate_store_bad_urls_rejected_without_echoing_them(url):
    if url == "redis://h:6379/0 ":  # surrounding space is stripped, inner space is not
        assert redisurl.parse_store(url) == "redis://h:6379/0"
        return
    with pytest.raises(ValueError) as info:
        redisurl.parse_store(url)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url, shown", [
    ("redis://:hunter2@h:6379/0", "redis://:****@h:6379/0"),
    ("redis://app:hunter2@h:6379/0", "redis://app:****@h:6379/0"),
    ("rediss://hunter2@h/0", "rediss://****@h/0"),
    ("unix://:hunter2@/run/r.sock?db=1", "unix://:****@/run/r.sock?db=1"),
    ("redis://h/0?password=hunter2&db=1", "redis://h/0?password=****&db=1"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("local", "local"),
])
def test_mask_url(url, shown):
    assert redisurl.mask_url(url) == shown


def test_scrub_removes_raw_and_decoded_password():
    url = "redis://app:p%40ss@h:6379/0"
    assert redisurl.scrub("auth p@ss and p%40ss failed", url) == "auth **** and **** failed"


# --- the policy is the same as Python's -----------------------------------------------------

times = st.floats(0, 200, allow_nan=False).map(lambda x: round(x, 3))
slot_lists = st.lists(st.tuples(times, st.booleans()), max_size=8)


@pytest.mark.e2e
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(now=times, limit=st.integers(1, 6), slots=slot_lists, blocked=times, paced=times,
       settle=times)
def test_lua_next_try_agrees_with_python(redis_server, now, limit, slots, blocked, paced, settle):
    store = store_for(redis_server)
    # The store hands the script only live slots (expiry > now), as the Python stores do.
    live = [(e, f) for e, f in slots if e > now]
    expected = next_try(now, limit, live, blocked, paced, settle)
    got = store.decide(now, limit, live, blocked, paced, settle)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=2e-6)


@pytest.mark.e2e
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(now=times, limit=st.integers(1, 6), slots=slot_lists, blocked=times, paced=times,
       settle=times, own_limit=st.integers(1, 4), own_slots=slot_lists, own_paced=times)
def test_lua_budget_decision_agrees_with_python(redis_server, now, limit, slots, blocked, paced,
                                                settle, own_limit, own_slots, own_paced):
    store = store_for(redis_server)
    live = [(e, f) for e, f in slots if e > now]
    own = (own_limit, [(e, f) for e, f in own_slots if e > now], own_paced)
    expected = decide(now, limit, live, blocked, paced, settle, own)
    got = store.decide(now, limit, live, blocked, paced, settle, own)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=2e-6)


@pytest.mark.e2e
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions, budget=budgets)
def test_window_and_budget_never_exceeded_redis(redis_server, steps, budget):
    redis_server.client().flushall()
    clock = FakeClock(0)
    simulate(lambda: store_for(redis_server, clock=clock), steps, clock=clock, budget=budget)


@pytest.mark.e2e
def test_budget_key_is_tagged_and_expires(redis_server):
    from cloudchat_cli.core.throttle import Budget
    from cloudchat_cli.core.throttle_redis import keys_for

    redis_server.client().flushall()
    budget = Budget("abc123", 2, pace=1.0)
    t = Throttle(5, WINDOW, store=store_for(redis_server), margin=0.0)
    t.budget = budget
    t.release(t.acquire())
    client = redis_server.client()
    own = keys_for(KEY, budget)[2]
    assert own.startswith("cloudchat:{" + key_hash(KEY) + "}:")  # one Cluster slot
    assert 0 < client.pttl(own) <= (WINDOW + 1) * 1000
    assert client.zcard(own) == 1


@pytest.mark.e2e
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
def test_window_never_exceeded_redis(redis_server, steps):
    # The scripts run on a fake server clock here (the only use of server_clock), so the
    # simulated processes and the server agree on a time that tests can move at will.
    redis_server.client().flushall()
    clock = FakeClock(0)
    simulate(lambda: store_for(redis_server, clock=clock), steps, clock=clock)


# --- the server's clock, never the clients' --------------------------------------------------


class Skewed:
    def __init__(self, offset: float):
        import time

        self.offset = offset
        self._time = time.time

    def __call__(self) -> float:
        return self._time() + self.offset


@pytest.mark.e2e
def test_a_client_30s_ahead_still_sees_the_others_slots(redis_server):
    window = 5.0
    right = Throttle(2, window, store=store_for(redis_server, window=window), margin=0.0,
                     timeout=1.0)
    ahead = Throttle(2, window, store=store_for(redis_server, window=window), margin=0.0,
                     timeout=1.0, clock=Skewed(30.0))
    for _ in range(2):
        right.release(right.acquire())
    # With client clocks, the skewed client would think both slots expired 25 s ago.
    slot, retry_at, eta = ahead.try_acquire()
    assert slot is None
    # Its wait is expressed on its own clock: about one window from its own now.
    assert 0 < eta - ahead.clock() <= window + 0.5
    assert 0 < retry_at - ahead.clock() <= window + 0.5
    # And the same the other way round: a client 30 s behind is not let through either.
    behind = Throttle(2, window, store=store_for(redis_server, window=window), margin=0.0,
                      timeout=1.0, clock=Skewed(-30.0))
    assert behind.try_acquire()[0] is None
    state = behind.state()
    assert state.used == 2 and 0 < state.next_free_at - behind.clock() <= window + 0.5


@pytest.mark.e2e
def test_a_block_is_shared_across_skewed_clocks(redis_server):
    a = Throttle(5, 5.0, store=store_for(redis_server, window=5.0), clock=Skewed(-30.0))
    b = Throttle(5, 5.0, store=store_for(redis_server, window=5.0), clock=Skewed(30.0))
    a.block(3.0)
    slot, _, eta = b.try_acquire()
    assert slot is None
    assert 2.0 < eta - b.clock() <= 3.5
    assert 2.0 < b.state().blocked_until - b.clock() <= 3.5


# --- keys: hash tag, TTLs, nothing secret ----------------------------------------------------


@pytest.mark.e2e
def test_keys_are_tagged_expire_and_hold_no_secrets(redis_server):
    recipient, text = "6281234567890", "Halo dari CloudChat"
    throttle = Throttle(3, 5.0, store=store_for(redis_server, window=5.0), margin=0.25,
                        timeout=2.0)
    slot = throttle.acquire()
    throttle.acquire()  # in flight, never released (a crashed holder)
    throttle.release(slot)
    throttle.block(1.0)
    throttle.even_pacing()
    client = redis_server.client()
    keys = sorted(client.keys("*"))
    tag = "cloudchat:{" + key_hash(KEY) + "}"
    assert keys == [tag + ":meta", tag + ":slots"]
    dump = repr(keys)
    longest = 2.0 + 5.0 + 0.25  # timeout + window + margin: the latest any slot expires
    for key in keys:
        assert client.pttl(key) > 0, f"{key} has no TTL"
    # Gone just after the last slot; the 429 block and pacing flag an hour after that.
    assert client.pttl(tag + ":slots") <= (longest + 1) * 1000
    assert client.pttl(tag + ":meta") <= (longest + 3600) * 1000
    for key in keys:
        dump += repr(client.zrange(key, 0, -1, withscores=True) if key.endswith("slots")
                     else client.hgetall(key))
    for secret in (KEY, KEY[-8:], recipient, text):
        assert secret not in dump


@pytest.mark.e2e
def test_crashed_holder_slot_expires_at_timeout_window_margin(redis_server):
    clock = FakeClock(1000.0)
    timeout, window, margin = 4.0, 10.0, 0.5
    throttle = Throttle(1, window, store=store_for(redis_server, window=window, margin=margin,
                                                   clock=clock),
                        margin=margin, timeout=timeout, clock=clock, sleep=clock.sleep)
    throttle.acquire()  # the holder dies: no release, ever
    clock.advance(timeout + window + margin - 0.001)
    assert throttle.try_acquire()[0] is None
    clock.advance(0.001)
    assert throttle.try_acquire()[0] is not None
    # On the real clock too: the slot's expiry is taken + timeout + window + margin.
    real = store_for(redis_server, key="sk_live_other_key_000000000000", window=window,
                     margin=margin)
    t = Throttle(1, window, store=real, margin=margin, timeout=timeout)
    t.acquire()
    client = redis_server.client()
    (member, expiry), = client.zrange("cloudchat:{" + key_hash("sk_live_other_key_000000000000")
                                      + "}:slots", 0, -1, withscores=True)
    seconds, micros = client.time()
    assert 0 < expiry - (seconds + micros / 1e6) <= timeout + window + margin
    assert member.endswith("f")


# --- failing closed --------------------------------------------------------------------------


@pytest.mark.e2e
def test_unreachable_store_fails_closed_with_masked_url(redis_server):
    url = f"redis://:hunter2@127.0.0.1:{redis_server.port}/0"
    redis_server.kill()
    store = store_for(redis_server, url=url)
    throttle = Throttle(5, 5.0, store=store)
    with pytest.raises(NetworkError) as info:
        throttle.acquire()
    err = info.value
    assert err.exit_code == ExitCode.NETWORK
    assert "redis://:****@127.0.0.1" in err.message and "nothing was sent" in err.message
    assert "CLOUDCHAT_RATE_STORE=local" in err.hint
    assert "hunter2" not in err.message + err.hint
    throttle.release(1)  # a release after the send must never turn a sent request into an error


@pytest.mark.e2e
def test_wrong_password_is_a_store_error_without_the_password(redis_factory):
    server = redis_factory(password="right-pass")
    url = f"redis://:wrong-pass@127.0.0.1:{server.port}/0"
    with pytest.raises(NetworkError) as info:
        Throttle(5, 5.0, store=store_for(server, url=url)).acquire()
    assert "wrong-pass" not in info.value.message and "right-pass" not in info.value.message


def test_without_the_extra_a_redis_url_is_exit_2(monkeypatch):
    from cloudchat_cli.core.redisclient import connect

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(UsageError) as info:
        connect("redis://:hunter2@127.0.0.1:6379/0")
    assert info.value.exit_code == ExitCode.USAGE
    assert "pip install 'cloudchat-cli[redis]'" in info.value.hint
    assert "hunter2" not in info.value.message



def test_the_readme_gives_the_acl_the_code_needs():
    from pathlib import Path

    from cloudchat_cli.core.throttle_redis import ACL

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"ACL SETUSER cloudchat on >PASSWORD {ACL}\n" in readme
