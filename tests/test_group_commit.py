"""The save thread's group commit: a batch is written whole, made durable by ONE sync call,
and only then reported (so answered with 200); a failed sync fails every event it covered."""

from __future__ import annotations

import ctypes
import errno
import threading

import httpx
import pytest

from cloudchat_cli.services.webhooks import store as store_module
from cloudchat_cli.services.webhooks.listener import ListenConfig, Listener
from cloudchat_cli.services.webhooks.signature import sign
from cloudchat_cli.services.webhooks.store import EventStore, SyncFs, fsync_each

SECRET = "whsec_group_commit_0123"


class RecordingSync:
    """A sync that logs what was on disk when it ran; it can hold the save thread or fail."""

    def __init__(self, log: list, fail: OSError | None = None):
        self.log, self.fail = log, fail
        self.entered, self.release = threading.Event(), threading.Event()
        self.release.set()
        self.calls: list[dict[str, bytes]] = []

    def __call__(self, directory, fds):
        self.calls.append({p.name: p.read_bytes() for p in directory.glob("*.json")})
        self.log.append(("sync", len(fds)))
        self.entered.set()
        assert self.release.wait(30)
        if self.fail is not None:
            raise self.fail
        fsync_each(directory, fds)
        self.log.append(("synced", len(fds)))


def test_a_batch_is_written_whole_synced_once_then_reported(tmp_path):
    log: list = []
    sync = RecordingSync(log)
    sync.release.clear()  # hold the first batch in its sync while five more arrive
    store = EventStore(tmp_path)
    store.sync = sync
    flusher = store.flusher(lambda batch: log.append(("done", [i.token for i in batch])))
    flusher.submit(store.pending("k0", b"{}", {}, token=0))
    assert sync.entered.wait(30)
    items = [store.pending(f"k{i}", b'{"n":%d}' % i, {}, token=i) for i in range(1, 6)]
    for item in items:
        flusher.submit(item)
    assert ("done", [0]) not in log  # held in its sync: not reported, so not answered
    sync.release.set()
    flusher.close()
    assert log == [("sync", 1), ("synced", 1), ("done", [0]),
                   ("sync", 5), ("synced", 5), ("done", [1, 2, 3, 4, 5])]
    # every file of the second batch was complete (final newline) when its one sync ran
    assert {n: d for n, d in sync.calls[1].items() if n != "k0.json"} == {
        item.path.name: item.data for item in items}
    assert all(item.error is None for item in items)


def test_a_failed_sync_fails_every_event_it_covered(tmp_path):
    log: list = []
    store = EventStore(tmp_path)
    store.sync = RecordingSync(log, fail=OSError(errno.EIO, "Input/output error"))
    batches: list = []
    flusher = store.flusher(batches.append)
    items = [store.pending(f"k{i}", b"{}", {}) for i in range(3)]
    for item in items:
        flusher.submit(item)
    flusher.close()
    assert [item.error.errno for item in items] == [errno.EIO] * 3
    assert sum(len(b) for b in batches) == 3 and ("synced", 1) not in log


@pytest.fixture
def listening(tmp_path, listener_thread):
    def start(sync, **kw) -> Listener:
        config = ListenConfig(port=0, secrets=[SECRET], save_dir=tmp_path / "events")
        return listener_thread(config, prepare=lambda lis: setattr(lis.store, "sync", sync),
                               **kw)

    return start


def post(lis: Listener, i: int) -> httpx.Response:
    body = b'{"event":"message.received","id":"evt_%d"}' % i
    return httpx.post(lis.url(), content=body, timeout=30,
                      headers={"X-CloudChat-Signature": sign(SECRET, body)})


def test_the_listener_answers_200_only_after_the_sync_of_its_batch(listening):
    log: list = []
    lis = listening(RecordingSync(log), on_delivery=lambda d: log.append(("answer", d.status)))
    assert post(lis, 1).status_code == 200
    assert log == [("sync", 1), ("synced", 1), ("answer", 200)]


def test_the_listener_answers_500_when_the_sync_fails_and_takes_the_retry(listening, tmp_path):
    log: list = []
    sync = RecordingSync(log, fail=OSError(errno.EIO, "Input/output error"))
    lis = listening(sync)
    failed = post(lis, 1)
    assert (failed.status_code, failed.json()) == (500, {"error": "could not save the event"})
    sync.fail = None
    assert post(lis, 1).json() == {"status": "ok"}  # the retry is saved, not a duplicate
    assert post(lis, 1).json() == {"status": "duplicate"}


def test_syncfs_reports_a_failed_writeback_as_an_error(tmp_path, monkeypatch):
    def failing(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(store_module, "_syncfs", failing)
    syncer = SyncFs(tmp_path)
    try:
        with pytest.raises(OSError) as caught:
            syncer(tmp_path, [])
        assert caught.value.errno == errno.EIO
    finally:
        syncer.close()


@pytest.mark.parametrize(("release", "expected"), [("5.4.0-150-generic", False),
                                                    ("5.8.0", True), ("6.18.44-fc", True)])
def test_syncfs_is_used_only_where_it_reports_writeback_errors(monkeypatch, tmp_path,
                                                               release, expected):
    monkeypatch.setattr(store_module.os, "uname", lambda: type("U", (), {"release": release}))
    monkeypatch.setattr(store_module, "_syncfs", lambda fd: 0)
    sync, release_it = store_module.default_sync(tmp_path)
    try:
        assert isinstance(sync, SyncFs) is expected
        assert (sync is fsync_each) is not expected
    finally:
        release_it()


@pytest.mark.skipif(not SyncFs.available(), reason="syncfs(2) reporting errors needs Linux 5.8+")
def test_the_real_syncfs_saves(tmp_path):
    store = EventStore(tmp_path)
    batches: list = []
    flusher = store.flusher(batches.append)
    assert isinstance(flusher.sync, SyncFs)
    items = [store.pending(f"k{i}", b"{}", {}) for i in range(10)]
    for item in items:
        flusher.submit(item)
    flusher.close()
    assert all(item.error is None for item in items) and store.keys() == {
        f"k{i}" for i in range(10)}


def test_a_directory_missing_when_the_flusher_starts_is_synced_file_by_file_first(
        tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(store_module, "fsync_each",
                        lambda d, fds: calls.append(("fsync_each", len(fds))))
    monkeypatch.setattr(store_module, "_syncfs", lambda fd: calls.append("syncfs") or 0)
    directory = tmp_path / "events"
    syncer = SyncFs(directory)  # removed before the listener's save thread began
    try:
        directory.mkdir()
        syncer(directory, [1, 2])  # its fd was not open before these writes: per file
        syncer(directory, [3])
    finally:
        syncer.close()
    assert calls == [("fsync_each", 2), "syncfs"]
