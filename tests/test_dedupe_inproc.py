"""Shared dedupe in-process, against a real redis-server: what happens after the claim when
the store or our own handling fails between the claim and the answer."""


import httpx
import pytest

from cloudchat_cli.services.webhooks.dedupe import DedupeUnavailable, key_for, namespace
from cloudchat_cli.services.webhooks.listener import ListenConfig, Listener
from cloudchat_cli.services.webhooks.signature import sign
from cloudchat_cli.services.webhooks.store import EventStore, event_key

SECRET = "whsec_dedupe_inproc_0123456789"
BODY = b'{"event":"message.received","id":"evt_inproc_dd","data":{"text":"Halo"}}'
KEY = key_for(namespace(SECRET), event_key("evt_inproc_dd", BODY))


@pytest.fixture
def serve(tmp_path, redis_server, listener_thread):
    def start(**kw) -> Listener:
        config = ListenConfig(port=0, secrets=["whsec_other_secret", SECRET],
                              save_dir=tmp_path / "events", dedupe_store=redis_server.url)
        return listener_thread(config, **kw)

    return start


def post(lis: Listener) -> httpx.Response:
    return httpx.post(lis.url(), content=BODY, timeout=30,
                      headers={"X-CloudChat-Signature": sign(SECRET, BODY)})


@pytest.mark.e2e
def test_saved_but_not_marked_done_is_still_a_200_and_says_the_claim_expires(
        serve, tmp_path, redis_server):
    notices: list[str] = []
    lis = serve(on_notice=notices.append)

    async def store_gone(claim):
        raise DedupeUnavailable("dedupe store redis://127.0.0.1:1/0 is unreachable (mark done)")

    lis.dedupe.done = store_gone
    response = post(lis)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})  # it is saved
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [BODY]
    assert any("mark done" in n and "expires by itself within 10 s" in n for n in notices)
    # The claim (keyed by the secret that verified it, the second) is left to expire.
    client = redis_server.client()
    assert client.get(KEY).startswith("c:") and 0 < client.pttl(KEY) <= 10_000


@pytest.mark.e2e
def test_a_failure_after_the_claim_releases_it(serve, redis_server):
    broken = {"display": True}

    def on_delivery(delivery):
        if delivery.outcome == "accepted" and broken["display"]:
            raise RuntimeError("the display broke")

    lis = serve(on_delivery=on_delivery)
    assert post(lis).status_code == 500
    assert redis_server.client().exists(KEY) == 0  # released: another replica may take it
    broken["display"] = False
    assert post(lis).status_code == 200
    assert redis_server.client().get(KEY) == "done"
