"""End to end: `webhook listen` replicas (processes with their own HOME, state and --save dir)
sharing dedupe through a private redis-server (`--dedupe-store` / webhook_dedupe_store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from cloudchat_cli.services.webhooks.dedupe import key_for, namespace
from cloudchat_cli.services.webhooks.store import event_key

from .conftest import base_env, run_cli
from .test_e2e_webhook import SECRET, Listener, event_body, receiver  # noqa: F401 (fixture)

PASSWORD = "s3cret-dedupe-pass-XYZ"


def replica_env(tmp_path: Path, name: str, store: str, **extra: str) -> dict[str, str]:
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    return {**base_env(root), "CLOUDCHAT_WEBHOOK_SECRET": SECRET,
            "CLOUDCHAT_WEBHOOK_DEDUPE_STORE": store, **extra}


@pytest.fixture
def replicas(tmp_path):
    started: list[Listener] = []

    def start(name: str, store: str, *args: str, **extra: str) -> Listener:
        menv = replica_env(tmp_path, name, store, **extra)
        item = Listener(menv, "--save", str(tmp_path / name / "events"), *args)
        item.save_dir = tmp_path / name / "events"
        started.append(item)
        return item

    yield start
    for item in started:
        item.stop()


def saved_files(*replicas: Listener) -> list[str]:
    return sorted(p.name for r in replicas for p in r.save_dir.glob("*.json") if p.is_file())


def redis_key(event_id: str) -> str:
    return key_for(namespace(SECRET), event_key(event_id, b""))


@pytest.mark.e2e
def test_two_replicas_save_and_forward_each_event_once(tmp_path, redis_server, replicas,
                                                       receiver):  # noqa: F811
    a = replicas("a", redis_server.url, "--forward-to", receiver.url)
    b = replicas("b", redis_server.url, "--forward-to", receiver.url)
    ids = [f"evt_shared_{n}" for n in range(6)]
    answers: list[tuple[str, int, dict]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(ids) * 4)

    def deliver(event_id: str, target: Listener) -> None:
        body = event_body(event_id)
        start.wait()  # every copy of every event at once, on both replicas
        # CloudChat's behaviour: retry whatever is not a 200 (bounded; a 503 means another
        # replica holds the claim, and it finishes within a save's time).
        for _ in range(2000):
            resp = target.post(body)
            with lock:
                answers.append((event_id, resp.status_code, resp.json()))
            if resp.status_code == 200:
                return
            assert resp.status_code == 503, resp.text

    threads = [threading.Thread(target=deliver, args=(i, r)) for i in ids for r in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Later retries, on either replica, are duplicates.
    for event_id in ids:
        for target in (a, b):
            again = target.post(event_body(event_id))
            assert again.status_code == 200 and again.json()["status"] == "duplicate"
    ok = [(i, body) for i, status, body in answers if status == 200 and body["status"] == "ok"]
    assert sorted(i for i, _ in ok) == ids  # each event acknowledged as new exactly once
    assert len(saved_files(a, b)) == len(ids)  # …and saved exactly once, in all
    assert a.stop() == 0 and b.stop() == 0  # drains the forward queues
    forwarded = [json.loads(receiver.requests.get_nowait()["body"])["id"]
                 for _ in range(receiver.requests.qsize())]
    assert sorted(forwarded) == ids  # one forward per event
    # What Redis holds: one tagged key per event, each with a TTL (7 days), nothing else —
    # no event id, body or secret.
    client = redis_server.client()
    keys = sorted(client.keys("*"))
    assert keys == sorted(redis_key(i) for i in ids)
    assert all(6 * 86400 * 1000 < client.pttl(k) <= 7 * 86400 * 1000 for k in keys)
    assert {client.get(k) for k in keys} == {"done"}
    dump = repr(keys) + "".join(repr(client.dump(k)) for k in keys)
    for secret in (SECRET, "evt_shared", "Halo"):
        assert secret not in dump


@pytest.mark.e2e
def test_a_failed_save_releases_the_claim_and_the_retry_is_saved(tmp_path, redis_server,
                                                                 replicas):
    a = replicas("a", redis_server.url)
    b = replicas("b", redis_server.url)
    blocker = a.save_dir / f"{event_key('evt_unlucky', b'')}.json"
    blocker.mkdir()  # replica a's disk "refuses" this event's file
    first = a.post(event_body("evt_unlucky"))
    assert first.status_code == 500
    assert redis_server.client().exists(redis_key("evt_unlucky")) == 0  # released
    retry = b.post(event_body("evt_unlucky"))  # CloudChat's retry lands on the other replica
    assert retry.status_code == 200 and retry.json()["status"] == "ok"
    assert saved_files(b) == [blocker.name] and saved_files(a) == []
    # And a later retry at the replica that failed is now a duplicate there too.
    late = a.post(event_body("evt_unlucky"))
    assert late.status_code == 200 and late.json()["status"] == "duplicate"
    assert redis_server.client().get(redis_key("evt_unlucky")) == "done"


@pytest.mark.e2e
def test_a_claim_held_by_a_killed_replica_expires(tmp_path, redis_server, replicas):
    a = replicas("a", redis_server.url, "--dedupe-claim-ttl", "1s")
    b = replicas("b", redis_server.url, "--dedupe-claim-ttl", "1s")
    # Replica a's save will hang: its event file is a FIFO nobody reads, so opening it blocks.
    os.mkfifo(a.save_dir / f"{event_key('evt_orphan', b'')}.json")
    client = redis_server.client()
    key = redis_key("evt_orphan")
    outcome: list[object] = []

    def stuck() -> None:
        try:
            outcome.append(a.post(event_body("evt_orphan")).status_code)
        except httpx.HTTPError as exc:
            outcome.append(type(exc).__name__)

    hung = threading.Thread(target=stuck)
    hung.start()
    deadline = time.monotonic() + 30
    while not client.exists(key):  # a has claimed the event and is stuck in its save
        assert time.monotonic() < deadline, "replica a never claimed the event"
        time.sleep(0.01)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    hung.join(30)
    assert outcome and outcome[0] != 200  # the dead replica never acknowledged it
    busy = b.post(event_body("evt_orphan"))  # the claim is still there: 503, CloudChat retries
    assert busy.status_code == 503 and "another replica" in busy.json()["error"]
    while client.exists(key):  # the dead replica's claim expires by itself
        assert time.monotonic() < deadline + 30, "the dead replica's claim never expired"
        time.sleep(0.05)
    retry = b.post(event_body("evt_orphan"))
    assert retry.status_code == 200 and retry.json()["status"] == "ok"
    assert len(saved_files(b)) == 1 and client.get(key) == "done"


@pytest.mark.e2e
def test_redis_down_is_503_said_on_stderr_and_served_again_when_it_returns(
        tmp_path, redis_factory, replicas):
    server = redis_factory(password=PASSWORD)
    a = replicas("a", server.url)
    server.kill()
    down = a.post(event_body("evt_during_outage"))
    assert down.status_code == 503
    assert "dedupe store is unavailable" in down.json()["error"]
    assert PASSWORD not in down.text and "127.0.0.1" not in down.text  # the sender learns less
    line = a.error_line("503 rejected")
    assert "redis://:****@127.0.0.1" in line and "unreachable" in line and PASSWORD not in line
    assert saved_files(a) == []  # nothing saved (nor acknowledged) without the shared check
    server.start()  # same port and password
    back = a.post(event_body("evt_during_outage"))  # CloudChat's retry
    assert back.status_code == 200 and back.json()["status"] == "ok"
    assert len(saved_files(a)) == 1
    assert a.stop() == 0
    said = ""
    while "Stopped after" not in said:  # everything it said after the 503 line
        said += a.errors.get(timeout=30)
    assert PASSWORD not in said


@pytest.mark.e2e
@pytest.mark.parametrize("what", ["unreachable", "wrong password"])
def test_an_unusable_store_at_start_is_exit_7_naming_it_masked(tmp_path, redis_factory, what):
    if what == "unreachable":
        url, expect = f"redis://:{PASSWORD}@127.0.0.1:1/0", "is unreachable"
    else:
        server = redis_factory(password="the-right-one")
        url, expect = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", "refused the credentials"
    proc = run_cli("webhook", "listen", "--port", "0", env=replica_env(tmp_path, "a", url),
                   timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert "webhook_dedupe_store redis://:****@127.0.0.1:" in proc.stderr
    assert expect in proc.stderr and "Listening" not in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout


def test_a_password_is_never_taken_from_argv_nor_shown(tmp_path, env):
    url = f"redis://:{PASSWORD}@cache.internal:6379/0"
    proc = run_cli("webhook", "listen", "--port", "0", "--dedupe-store", url,
                   env={**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET})
    assert proc.returncode == 2 and "visible to other users" in proc.stderr
    assert "CLOUDCHAT_WEBHOOK_DEDUPE_STORE" in proc.stderr and PASSWORD not in proc.stderr
    refused = run_cli("config", "set", "webhook_dedupe_store", url, env=env)
    assert refused.returncode == 2 and PASSWORD not in refused.stderr
    show = run_cli("config", "show", "--json",
                   env={**env, "CLOUDCHAT_WEBHOOK_DEDUPE_STORE": url})
    item = json.loads(show.stdout)["webhook_dedupe_store"]
    assert item["value"] == "redis://:****@cache.internal:6379/0"
    assert item["source"] == "env (CLOUDCHAT_WEBHOOK_DEDUPE_STORE)"
    assert PASSWORD not in show.stdout
    assert json.loads(run_cli("config", "show", "--json", env=env).stdout)[
        "webhook_dedupe_store"]["value"] == "local"


@pytest.mark.parametrize("flag, value", [("--dedupe-store", "memcached://h:1"),
                                         ("--dedupe-ttl", "0"), ("--dedupe-ttl", "7y"),
                                         ("--dedupe-claim-ttl", "nan")])
def test_bad_dedupe_options_are_exit_2(env, flag, value):
    proc = run_cli("webhook", "listen", "--port", "0", flag, value,
                   env={**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET})
    assert proc.returncode == 2 and flag in proc.stderr, proc.stderr


MISSING_EXTRA = textwrap.dedent("""
    import sys
    sys.modules["redis"] = None  # as if `pip install cloudchat-cli` without [redis]
    from cloudchat_cli.app import main
    main(sys.argv[1:])
""")


@pytest.mark.e2e
def test_without_the_extra_a_dedupe_store_is_exit_2_with_the_install_command(tmp_path):
    menv = replica_env(tmp_path, "a", f"redis://:{PASSWORD}@127.0.0.1:1/0")
    proc = subprocess.run([sys.executable, "-c", MISSING_EXTRA, "webhook", "listen", "--port",
                           "0"], env=menv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'cloudchat-cli[redis]'" in proc.stderr
    assert "webhook_dedupe_store" in proc.stderr and PASSWORD not in proc.stderr


LISTEN_IMPORTS = textwrap.dedent("""
    import sys
    from cloudchat_cli.services.webhooks import listener
    listener.Listener.serve_forever = lambda self: None  # start up, then stop at once
    from cloudchat_cli.app import main
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
    print("REDIS=" + str(any(m.split(".")[0] == "redis" for m in sys.modules)), file=sys.stderr)
""")


@pytest.mark.e2e
def test_listen_imports_redis_only_when_a_dedupe_store_is_configured(tmp_path, redis_server):
    def imports(store: str) -> str:
        proc = subprocess.run([sys.executable, "-c", LISTEN_IMPORTS, "webhook", "listen",
                               "--port", "0"], env=replica_env(tmp_path, "a", store),
                              capture_output=True, text=True, timeout=60)
        assert "Listening on" in proc.stderr, proc.stderr
        return proc.stderr.strip().splitlines()[-1]

    assert imports("local") == "REDIS=False"
    assert imports(redis_server.url) == "REDIS=True"  # positive control: the check can see it


@pytest.mark.e2e
def test_replicas_on_a_redis_cluster_share_dedupe(tmp_path, redis_cluster, replicas):
    # Each replica is given a different node: the client follows the cluster to the slot.
    a, b = (replicas(name, f"redis://127.0.0.1:{node.port}/0")
            for name, node in zip("ab", redis_cluster[:2], strict=True))
    first = a.post(event_body("evt_cluster"))
    assert first.status_code == 200 and first.json()["status"] == "ok"
    again = b.post(event_body("evt_cluster"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert len(saved_files(a, b)) == 1
