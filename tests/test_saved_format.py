"""Saved event files carry a format version; readers take a file without one as format 1 and
refuse a newer one with a clear error (replay, verify --dir, the forwarder, broadcast track)."""

from __future__ import annotations

import json

import pytest

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.webhooks import replay, verifying
from cloudchat_cli.services.webhooks.forwarder import Forwarder
from cloudchat_cli.services.webhooks.queue import ForwardQueue
from cloudchat_cli.services.webhooks.store import (
    FORMAT,
    EventStore,
    NewerFormat,
    NotSavedEvent,
    read_saved,
)

BODY = b'{"event":"message.received","id":"evt_1","data":{"text":"Halo"}}'


def write(path, record: dict) -> None:
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")


def test_a_saved_event_says_its_format(tmp_path):
    path = EventStore(tmp_path).save("k", BODY, {"id": "evt_1", "received_at": 1.0})
    record = json.loads(path.read_bytes())
    assert FORMAT == 1 and record["format"] == 1 and record["body"] == BODY.decode()


def test_a_file_saved_before_formats_existed_reads_as_format_1(tmp_path):
    write(tmp_path / "old.json", {"id": "evt_1", "received_at": 1.0, "signature": "x",
                                  "body": BODY.decode()})
    (event,) = EventStore(tmp_path).load_all()
    assert event.body == BODY and event.meta["id"] == "evt_1"
    assert EventStore(tmp_path).load("old").body == BODY
    assert read_saved(tmp_path / "old.json").body == BODY


def newer(tmp_path):
    EventStore(tmp_path).save("ok", BODY, {"id": "evt_1", "received_at": 1.0})
    write(tmp_path / "next.json", {"format": 2, "id": "evt_2", "received_at": 2.0,
                                   "body": "{}"})


def test_store_readers_refuse_a_newer_format(tmp_path):
    newer(tmp_path)
    store = EventStore(tmp_path)
    message = r"next\.json was saved by a newer cloudchat \(saved event format 2; this " \
              r"version reads format 1\)"
    with pytest.raises(NewerFormat, match=message) as caught:
        store.load_all()
    assert isinstance(caught.value, UsageError) and caught.value.hint == "upgrade cloudchat " \
        "to read it"
    with pytest.raises(NewerFormat, match=message):
        store.load("next")
    assert store.load("ok").body == BODY  # the others still read
    with pytest.raises(NotSavedEvent, match=message + ": upgrade cloudchat"):
        read_saved(tmp_path / "next.json")  # broadcast track skips it with this reason


def test_replay_and_verify_dir_refuse_a_newer_format_before_doing_anything(tmp_path):
    newer(tmp_path)
    with pytest.raises(NewerFormat, match="next.json was saved by a newer cloudchat"):
        replay.select(tmp_path)
    with pytest.raises(NewerFormat, match="next.json was saved by a newer cloudchat"):
        verifying.verify_dir(tmp_path, ["whsec_x"])


def test_the_forwarder_gives_up_a_newer_format_event_and_keeps_its_file(tmp_path):
    newer(tmp_path)
    queue = ForwardQueue(tmp_path)
    queue.add([("next", 2.0)])
    notices: list[str] = []
    fwd = Forwarder("http://app/hook", EventStore(tmp_path), queue, on_notice=notices.append,
                    send=lambda *a, **k: pytest.fail("must not be sent"))
    assert fwd._attempt(queue.head()) is True
    assert queue.states() == {"next": "given_up"}
    assert "given up: next.json was saved by a newer cloudchat" in notices[-1]
    assert (tmp_path / "next.json").exists()
    queue.close()


@pytest.mark.parametrize("value", ["2", True, 1.5, None])
def test_a_format_that_is_not_a_number_is_not_taken_for_a_newer_one(tmp_path, value):
    write(tmp_path / "odd.json", {"format": value, "body": "{}"})
    (event,) = EventStore(tmp_path).load_all()
    assert event.body == b"{}"
