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
def serve(tmp_path, listener_thread):
    def start(**kw) -> Listener:
        config = ListenConfig(port=0, secrets=[SECRET], save_dir=tmp_path / "events")
        return listener_thread(config, **kw)

    return start


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


def test_a_retry_while_the_first_copy_is_being_saved_is_a_503_and_a_failed_save_loses_nothing(
        serve, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from cloudchat_cli.services.webhooks import store

    real_write = store.write_batch
    writing, release = threading.Event(), threading.Event()
    calls = []

    def write_batch(directory, batch, sync=None):
        calls.append(len(batch))
        if len(calls) == 1:  # the first copy: hold the save, then fail it
            writing.set()
            assert release.wait(30)
            for item in batch:
                item.error = OSError(28, "No space left on device")
            return False
        return real_write(directory, batch, sync)

    monkeypatch.setattr(store, "write_batch", write_batch)
    lis = serve()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, lis)
        assert writing.wait(30)
        retry = post(lis)  # CloudChat's retry while the first copy is still being saved
        release.set()
        first = first.result()
    assert (retry.status_code, retry.json()) == (
        503, {"error": "this event is being saved: retry later"})
    assert first.status_code == 500  # the save failed: nothing was acknowledged
    later = post(lis)  # the next retry is taken and saved
    assert (later.status_code, later.json()) == (200, {"status": "ok"})
    assert post(lis).json() == {"status": "duplicate"}  # once saved: a duplicate
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [BODY]


def test_without_save_a_retry_after_the_answer_is_a_duplicate(tmp_path):
    lis = Listener(ListenConfig(port=0, secrets=[SECRET]))
    thread = threading.Thread(target=lis.serve_forever)
    thread.start()
    try:
        assert post(lis).json() == {"status": "ok"}
        assert post(lis).json() == {"status": "duplicate"}
        assert not lis._inflight
    finally:
        lis.front.stop()
        thread.join(30)
        lis.shutdown()


def test_a_stop_whose_opt_out_cannot_be_recorded_is_a_500_and_its_retry_records_it(
        serve, tmp_path):
    from cloudchat_cli.services.optout import OptoutError

    stop = (b'{"event":"message.received","id":"evt_stop","channel":"sms",'
            b'"data":{"from":"+6281234567890","text":"STOP"}}')
    recorded = []
    broken = {"store": True}

    def on_event(event):
        if broken["store"]:
            raise OptoutError("cannot open the opt-out list: read-only file system")
        recorded.append(event["id"])

    lis = serve()
    lis.config.on_event = on_event
    first = post(lis, stop)
    assert first.status_code == 500
    assert "opt-out" in first.json()["error"] or "act on" in first.json()["error"]
    assert EventStore(tmp_path / "events").load_all() == []  # not saved: not acknowledged
    broken["store"] = False
    retry = post(lis, stop)  # CloudChat's retry runs the opt-out again
    assert (retry.status_code, retry.json()) == (200, {"status": "ok"})
    assert recorded == ["evt_stop"]
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [stop]
    assert post(lis, stop).json() == {"status": "duplicate"}
    assert recorded == ["evt_stop"]


def test_the_real_keyword_handler_with_an_unusable_opt_out_list_is_a_500(isolated, tmp_path):
    from cloudchat_cli.core import paths
    from cloudchat_cli.services import optout

    stop = (b'{"event":"message.received","id":"evt_stop2","channel":"whatsapp",'
            b'"data":{"from":"+6281234567890","text":"STOP"}}')
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    blocker = paths.state_dir() / "optout"
    blocker.write_text("not a directory")
    notes = []
    lis = Listener(ListenConfig(port=0, secrets=[SECRET], save_dir=tmp_path / "events",
                                on_event=optout.keyword_handler("default", ["stop"],
                                                                notes.append)))
    thread = threading.Thread(target=lis.serve_forever)
    thread.start()
    try:
        assert post(lis, stop).status_code == 500
        blocker.unlink()  # the operator fixes the state dir; CloudChat retries
        assert post(lis, stop).json() == {"status": "ok"}
        assert post(lis, stop).json() == {"status": "duplicate"}
    finally:
        lis.front.stop()
        thread.join(30)
        lis.shutdown()
    assert notes[0].startswith("opt-out: could not add") and "Not a directory" in notes[0]
    assert notes[1] == "opt-out: added whatsapp 6281234567890 (replied 'STOP')"
    lst = optout.OptoutList("default")
    try:
        assert [e.recipient for e in lst.entries()] == ["6281234567890"]
    finally:
        lst.close()
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [stop]


def test_a_stop_not_recorded_is_not_queued_for_forwarding_so_its_retry_is_queued_once(
        isolated):
    stop = (b'{"event":"message.received","id":"evt_stop3","channel":"whatsapp",'
            b'"data":{"from":"+6281234567890","text":"STOP"}}')
    broken = {"store": True}

    def on_event(event):
        if broken["store"]:
            raise OSError(30, "Read-only file system")

    # the app is not there: what was queued stays pending, so the counts show every enqueue
    lis = Listener(ListenConfig(port=0, secrets=[SECRET], forward_to="http://127.0.0.1:9/",
                                on_event=on_event))
    thread = threading.Thread(target=lis.serve_forever)
    thread.start()
    try:
        first = post(lis, stop)
        assert first.status_code == 500
        assert lis.queue.counts()["pending"] == 0 and lis.store.keys() == set()
        broken["store"] = False
        assert post(lis, stop).json() == {"status": "ok"}
        assert post(lis, stop).json() == {"status": "duplicate"}
        assert lis.queue.counts()["pending"] == 1 and len(lis.store.keys()) == 1
    finally:
        lis.front.stop()
        thread.join(30)
        lis.shutdown()


@pytest.mark.e2e
def test_exec_children_do_not_get_redis_passwords(tmp_path, monkeypatch):
    dump = tmp_path / "env.txt"
    script = tmp_path / "dump-env.sh"
    script.write_text(f"#!/bin/sh\nenv > '{dump}'\n")
    script.chmod(0o700)
    monkeypatch.setenv("CLOUDCHAT_RATE_STORE", "redis://:ratepw@127.0.0.1:6379/0")
    monkeypatch.setenv("CLOUDCHAT_WEBHOOK_DEDUPE_STORE", "redis://:dedupepw@127.0.0.1:6379/1")
    monkeypatch.setenv("CLOUDCHAT_OTHER_STORE", "rediss://user:otherpw@cache.example:6380")
    monkeypatch.setenv("CLOUDCHAT_QUERY_STORE", "redis://cache.example?password=querypw")
    monkeypatch.setenv("CLOUDCHAT_PROFILE", "default")  # no secret: kept
    monkeypatch.setenv("MY_APP_SETTING", "kept")
    lis = Listener(ListenConfig(port=0, secrets=[SECRET], exec_cmd=str(script)))
    thread = threading.Thread(target=lis.serve_forever)
    thread.start()
    try:
        assert post(lis).json() == {"status": "ok"}
    finally:
        lis.front.stop()
        thread.join(30)
        lis.shutdown()  # runs the queued --exec command before returning
    env = dump.read_text()
    for secret in ("ratepw", "dedupepw", "otherpw", "querypw", SECRET):
        assert secret not in env
    assert "CLOUDCHAT_RATE_STORE" not in env and "CLOUDCHAT_WEBHOOK_DEDUPE_STORE" not in env
    assert "CLOUDCHAT_PROFILE=default" in env and "MY_APP_SETTING=kept" in env
