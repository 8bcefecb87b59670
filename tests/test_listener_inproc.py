"""The listener in-process: failures inside our own handling still get an answer."""

import threading

import httpx
import pytest

from cloudchat_cli.services.webhooks.listener import ListenConfig, Listener
from cloudchat_cli.services.webhooks.signature import sign
from cloudchat_cli.services.webhooks.store import EventStore

SECRET = "whsec_inproc_0123456789"
BODY = b'{"event":"message.received","id":"evt_inproc","data":{"text":"Halo"}}'


@pytest.fixture
def serve(tmp_path):
    running = []

    def start(**kw) -> Listener:
        lis = Listener(ListenConfig(port=0, secrets=[SECRET], save_dir=tmp_path / "events"),
                       **kw)
        thread = threading.Thread(target=lis.serve_forever)
        thread.start()  # the socket already listens: requests wait in its backlog meanwhile
        running.append((lis, thread))
        return lis

    yield start
    for lis, thread in running:
        lis.front.stop()
        thread.join(30)
        lis.shutdown()
        assert not thread.is_alive()


def post(lis: Listener, body: bytes = BODY) -> httpx.Response:
    return httpx.post(lis.url(), content=body, timeout=30,
                      headers={"X-CloudChat-Signature": sign(SECRET, body)})


def test_a_failure_after_the_save_is_a_500_and_the_retry_is_processed(serve, tmp_path):
    broken = {"display": True}
    shown = []

    def on_delivery(delivery):
        if delivery.outcome == "accepted" and broken["display"]:
            raise RuntimeError("the display broke")
        shown.append(delivery)

    lis = serve(on_delivery=on_delivery)
    first = post(lis)
    assert (first.status_code, first.json()) == (
        500, {"error": "internal error while handling the event"})
    assert "RuntimeError: the display broke" in shown[-1].detail
    broken["display"] = False
    retry = post(lis)  # CloudChat's retry: its id was forgotten, so it is handled again
    assert (retry.status_code, retry.json()) == (200, {"status": "ok"})
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [BODY]


def test_a_bug_in_checking_still_gets_an_answer(serve):
    notices = []
    lis = serve(on_notice=notices.append)

    def check(body, headers):
        raise ValueError("a bug")

    lis.check = check
    response = post(lis)
    assert (response.status_code, response.json()) == (500, {"error": "internal error"})
    lis.check = Listener.check.__get__(lis)
    assert post(lis).status_code == 200  # and the listener carries on
