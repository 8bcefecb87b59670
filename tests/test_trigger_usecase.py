"""The ``webhook trigger`` use case in-process: a real receiver on loopback, no subprocess."""

from __future__ import annotations

import json
import socket

import pytest

from cloudchat_cli.core.errors import Interrupted, UsageError
from cloudchat_cli.services.webhooks.signature import sign
from cloudchat_cli.services.webhooks.trigger import TriggerRequest, trigger

from .hostile import HostileServer

SECRET = "whsec_unit_trigger_0123456789"


def url_of(server: HostileServer) -> str:
    return f"http://127.0.0.1:{server.port}/hook"


def test_delivered_signed_event_with_overrides():
    with HostileServer("ok") as app:
        done = trigger(TriggerRequest(url_of(app), SECRET, channel="tg",
                                      sets=["data.text=Tes"]))
    assert done.delivered and done.failure is None and len(done.attempts) == 1
    (got,) = app.requests
    assert json.loads(got.body) == done.event
    assert done.event["channel"] == "telegram" and done.event["data"]["text"] == "Tes"
    assert got.headers["x-cloudchat-signature"] == sign(SECRET, got.body)


def test_a_5xx_is_retried_after_the_vendors_delays_then_named_server():
    waits, seen = [], []
    with HostileServer("500") as app:
        done = trigger(TriggerRequest(url_of(app), SECRET), sleep=waits.append,
                       on_attempt=lambda a, delay: seen.append((a.number, a.status, delay)))
    assert waits == [2.0, 4.0, 8.0] and len(app.requests) == 4
    assert seen == [(1, 500, 2.0), (2, 500, 4.0), (3, 500, 8.0), (4, 500, None)]
    assert done.failure == "server" and "after 4 attempt(s): HTTP 500" in done.describe_failure()


@pytest.mark.parametrize(("mode", "failure"), [("redirect", "refused"), ("500", "server")])
def test_no_retry_sends_once(mode, failure):
    with HostileServer(mode) as app:
        done = trigger(TriggerRequest(url_of(app), SECRET, retry=False))
    assert len(app.requests) == 1 and done.failure == failure


def test_nobody_listening_is_a_network_failure():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        done = trigger(TriggerRequest(f"http://127.0.0.1:{port}/", SECRET, retry=False))
    assert done.failure == "network" and done.last.status is None


def test_an_interrupt_in_the_retry_wait_ends_it_with_nothing_more_sent():
    def ctrl_c(seconds):
        raise Interrupted("interrupted (Ctrl-C)")

    with HostileServer("500") as app, pytest.raises(Interrupted):
        trigger(TriggerRequest(url_of(app), SECRET), sleep=ctrl_c)
    assert len(app.requests) == 1


def test_a_bad_url_or_channel_is_a_usage_error_before_any_request():
    with pytest.raises(UsageError):
        trigger(TriggerRequest("file:///etc/passwd", SECRET))
    with HostileServer("ok") as app:
        with pytest.raises(UsageError):
            trigger(TriggerRequest(url_of(app), SECRET, channel="pigeon"))
        assert app.requests == []
