"""The forward queue's backoff, give-up and ordering logic, on an injected clock (no waiting)."""

from __future__ import annotations

import sqlite3

import pytest

from cloudchat_cli.core.durations import parse_duration
from cloudchat_cli.core.errors import CloudChatError, UsageError
from cloudchat_cli.services.webhooks.delivery import Attempt
from cloudchat_cli.services.webhooks.forwarder import Forwarder
from cloudchat_cli.services.webhooks.queue import (
    FILE_NAME,
    SCHEMA_VERSION,
    ForwardPolicy,
    ForwardQueue,
)
from cloudchat_cli.services.webhooks.replay import parse_since
from cloudchat_cli.services.webhooks.store import EventStore
from cloudchat_cli.services.webhooks.unit import _quote


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_policy_waits_like_cloudchat_first_then_doubles_up_to_the_cap():
    policy = ForwardPolicy(delays=(2.0, 4.0, 8.0), max_delay=3600.0)
    assert [policy.delay(n) for n in range(1, 12)] == [
        2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    assert policy.delay(12) == 3600 and policy.delay(10_000) == 3600
    assert ForwardPolicy(delays=(), max_delay=10).delay(1) == 2
    assert ForwardPolicy(delays=(0.1,), max_delay=0.3).delay(5) == 0.3


def test_failed_attempts_back_off_then_give_up_after_the_policy_time(tmp_path):
    clock = Clock()
    queue = ForwardQueue(tmp_path, clock=clock,
                         policy=ForwardPolicy(delays=(2.0,), give_up_after=100.0))
    queue.add([("a", clock.now), ("b", clock.now + 1)])
    head = queue.head()
    assert head.key == "a" and head.next_at == clock.now
    assert queue.failed(head, "refused") == clock.now + 2
    head = queue.head()
    assert (head.key, head.attempts, head.last_error) == ("a", 1, "refused")
    clock.now += 2
    assert queue.failed(head, "refused") == clock.now + 4
    clock.now += 100  # past give_up_after since "a" was received
    assert queue.failed(queue.head(), "refused") is None
    assert queue.head().key == "b"  # the next one goes on
    assert queue.counts() == {"pending": 1, "delivered": 0, "given_up": 1}


def test_arrival_order_known_keys_and_state_survive_reopening(tmp_path):
    clock = Clock()
    queue = ForwardQueue(tmp_path, clock=clock)
    assert queue.add([("late", 20.0), ("early", 10.0)]) == 2
    assert queue.add([("early", 10.0)]) == 0  # a re-save is not a second delivery
    assert queue.head().key == "early"
    queue.delivered("early")
    queue.close()
    again = ForwardQueue(tmp_path, clock=clock)
    assert again.counts() == {"pending": 1, "delivered": 1, "given_up": 0}
    assert again.head().key == "late"
    assert again.states() == {"early": "delivered", "late": "pending"}
    again.mark_delivered([("late", 20.0), ("elsewhere", 5.0)])
    assert again.counts() == {"pending": 0, "delivered": 3, "given_up": 0}


def test_the_file_carries_a_version_and_a_newer_one_is_refused(tmp_path):
    ForwardQueue(tmp_path).close()
    db = sqlite3.connect(tmp_path / FILE_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(CloudChatError, match="newer cloudchat"):
        ForwardQueue(tmp_path)


def saved(store: EventStore, key: str, received_at: float) -> None:
    store.save(key, f'{{"id":"{key}"}}'.encode(), {"id": key, "received_at": received_at,
                                                  "signature": "ab" * 32, "headers": {}})


def test_forwarder_keeps_order_behind_a_failing_head_and_skips_a_refused_event(tmp_path):
    clock = Clock()
    store = EventStore(tmp_path)
    queue = ForwardQueue(tmp_path, clock=clock, policy=ForwardPolicy(delays=(5.0,)))
    for i, key in enumerate(["e1", "e2", "e3"]):
        saved(store, key, clock.now + i)
    queue.add([("e1", clock.now), ("e2", clock.now + 1), ("e3", clock.now + 2)])
    answers = {"e1": [None, 200], "e2": [422], "e3": [200]}
    sent, notices = [], []

    def send(url, body, headers, retry, client):
        key = body.decode().split('"')[3]
        sent.append(key)
        status = answers[key].pop(0)
        assert retry is False and headers["X-CloudChat-Signature"] == b"ab" * 32
        return [Attempt(1, status, 0.001, None if status else "connection refused")]

    fwd = Forwarder("http://app/hook", store, queue, on_notice=notices.append, send=send)
    assert fwd._attempt(queue.head()) is False  # e1: the app is down
    assert queue.head().key == "e1" and queue.head().next_at == clock.now + 5
    assert "not taking events" in notices[-1]
    clock.now += 5
    while (head := queue.head()) is not None:
        fwd._attempt(head)
    assert sent == ["e1", "e1", "e2", "e3"]
    assert queue.states() == {"e1": "delivered", "e2": "given_up", "e3": "delivered"}
    assert any("HTTP 422" in n and "given up" in n for n in notices)
    assert "is back" in notices[-1]


def test_forwarder_gives_up_an_event_whose_file_is_gone(tmp_path):
    store = EventStore(tmp_path)
    queue = ForwardQueue(tmp_path)
    queue.add([("ghost", 1.0)])
    notices = []
    fwd = Forwarder("http://app/hook", store, queue, on_notice=notices.append,
                    send=lambda *a, **k: pytest.fail("nothing to send"))
    assert fwd._attempt(queue.head()) is True
    assert queue.states() == {"ghost": "given_up"} and "missing" in notices[-1]


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("3d", 259200), ("0.5", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text, "--x") == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "1w", "nan", "inf", "1e999"])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(UsageError, match="--x"):
        parse_duration(text, "--x")


def test_since_accepts_durations_dates_and_epoch_seconds():
    now = 1_800_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1700000000", now) == 1700000000
    assert parse_since("2026-11-26T08:00:00+00:00", now) == 1795680000
    with pytest.raises(UsageError, match="--since"):
        parse_since("yesterday", now)


def test_unit_words_are_quoted_and_escaped_for_systemd():
    assert _quote("--port") == "--port"
    assert _quote("/hook 100%") == '"/hook 100%%"'
    assert _quote('say "$HOME"') == '"say \\"$$HOME\\""'


def listener(directory, forward: bool):
    from cloudchat_cli.services.webhooks.listener import ListenConfig, Listener

    lis = Listener(ListenConfig(port=0, secrets=["whsec_unit_0123456789"], save_dir=directory,
                                forward_to="http://127.0.0.1:9/hook" if forward else None))
    lis.front.sock.close()  # never served: only its start-up and stop are under test
    return lis


def test_a_save_whose_queue_row_a_crash_lost_is_queued_at_the_next_start(tmp_path, isolated):
    crashed = listener(tmp_path, forward=True)
    saved(crashed.store, "lost-row", 5.0)  # on disk, killed before its row was written
    # (no shutdown: the process died)
    again = listener(tmp_path, forward=True)
    assert again.queue.states() == {"lost-row": "pending"}


def test_events_saved_without_forwarding_are_not_forwarded_by_a_later_run(tmp_path, isolated):
    first = listener(tmp_path, forward=True)
    first.shutdown()  # a clean stop: every save of that run had its row
    plain = listener(tmp_path, forward=False)
    saved(plain.store, "not-for-the-app", 5.0)
    plain.shutdown()
    later = listener(tmp_path, forward=True)
    assert later.queue.states() == {} and later.queue.waiting == 0


def test_unit_environment_lines_survive_spaces_and_percent_signs(tmp_path):
    from cloudchat_cli.services.webhooks.unit import systemd_unit

    unit = systemd_unit(["/usr/bin/cloudchat", "webhook", "listen", "--print-systemd-unit"],
                        cwd=tmp_path, user="app", state_dir=tmp_path / "my state 100%",
                        config_dir=tmp_path / "c", profile="shop")
    assert f'Environment="CLOUDCHAT_STATE_DIR={tmp_path}/my state 100%%"' in unit
    assert "Environment=CLOUDCHAT_PROFILE=shop" in unit and "User=app" in unit
    assert "ExecStart=/usr/bin/cloudchat webhook listen\n" in unit


def test_original_headers_are_the_bytes_received_and_unsendable_values_are_left_out():
    from cloudchat_cli.services.webhooks.store import original_headers

    headers = original_headers({"signature": "ab" * 32, "headers": {
        "user-agent": "caf\xe9", "x-cloudchat-event": "bad\r\nInjected: 1",
        "content-type": "\u20ac", "x-other": "not forwarded"}})
    assert headers == {"User-Agent": b"caf\xe9", "X-CloudChat-Signature": b"ab" * 32}


@pytest.mark.parametrize(("status", "kept"), [
    (301, True), (401, True), (403, True), (404, True), (405, True), (408, True), (429, True),
    (500, True), (503, True), (400, False), (409, False), (413, False), (422, False)])
def test_only_a_refusal_of_the_event_itself_gives_it_up(tmp_path, status, kept):
    """A redirect, 401/403/404 or 405 says the app or its URL is wrong (all events would get
    it): the event waits, rather than the whole queue being given up one event at a time."""
    clock = Clock()
    store = EventStore(tmp_path)
    queue = ForwardQueue(tmp_path, clock=clock)
    saved(store, "e1", clock.now)
    queue.add([("e1", clock.now)])
    fwd = Forwarder("http://app/hook", store, queue, on_notice=lambda m: None,
                    send=lambda *a, **k: [Attempt(1, status, 0.001)])
    fwd._attempt(queue.head())
    assert queue.states() == {"e1": "pending" if kept else "given_up"}
