"""End to end: several "machines" (processes with their own HOME and state dirs, sharing nothing
but a private redis-server) use one App key through `rate_store = redis://…`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest

from cloudchat_cli.core.throttle_redis import keys_for

from .conftest import TEST_KEY, base_env, cloudchat_exe, run_cli
from .test_e2e_broadcast import TEMPLATE, make_csv

PASSWORD = "s3cret-redis-pass-XYZ"


def machine(tmp_path: Path, name: str, box, store: str, limit: int, window: float,
            **extra: str) -> dict[str, str]:
    """A machine of its own: private HOME, config and state; only Redis and the API shared."""
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    return {**base_env(root), "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_RATE_LIMIT": str(limit), "CLOUDCHAT_RATE_WINDOW": str(window),
            "CLOUDCHAT_RATE_MARGIN": "0.05", "CLOUDCHAT_RATE_STORE": store, **extra}


def max_in_window(ts: list[float], window: float) -> int:
    ts = sorted(ts)
    return max((sum(1 for t in ts[i:] if t < s + window) for i, s in enumerate(ts)), default=0)


def send_from(machines: list[dict[str, str]], each: int) -> list[int]:
    codes: list[int] = []

    def worker(n: int, menv: dict[str, str]) -> None:
        for i in range(each):
            codes.append(run_cli("send", "6281234567890", f"m{n} #{i}", "-q", env=menv,
                                 process=True).returncode)

    threads = [threading.Thread(target=worker, args=(n, m)) for n, m in enumerate(machines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


@pytest.mark.e2e
def test_machines_share_one_window_through_redis(tmp_path, sandbox_factory, redis_server):
    limit, window, machines, each = 4, 2.0, 3, 4
    box = sandbox_factory("--rate-limit", str(limit), "--rate-window", str(window), "-q")
    envs = [machine(tmp_path, f"m{n}", box, redis_server.url, limit, window)
            for n in range(machines)]
    codes = send_from(envs, each)
    assert codes == [0] * (machines * each)
    records = box.records()
    assert [r["status"] for r in records] == [201] * (machines * each)  # zero 429s
    ts = sorted(r["ts"] for r in records)
    assert max_in_window(ts, window) <= limit
    # 12 requests at 4 per 2 s: at least two whole windows between the first and the last.
    assert ts[-1] - ts[0] >= (machines * each // limit - 1) * window
    # The window lived in Redis, not on the machines' disks.
    assert not any((tmp_path / f"m{n}" / "state" / "throttle").exists() for n in range(machines))
    # What the machines left in Redis: two tagged keys, each with a TTL, nothing of the
    # key, the recipient or the texts (a dump of every byte stored).
    client = redis_server.client()
    keys = sorted(client.keys("*"))
    assert len(keys) == 2 and all(k.startswith("cloudchat:{") for k in keys)
    assert all(client.pttl(k) > 0 for k in keys)
    dump = repr(keys) + "".join(repr(client.dump(k)) for k in keys) + repr(
        [client.zrange(k, 0, -1, withscores=True) if k.endswith(":slots") else client.hgetall(k)
         for k in keys])
    for secret in (TEST_KEY, TEST_KEY[-12:], "6281234567890", "m0 #0"):
        assert secret not in dump


@pytest.mark.e2e
def test_without_a_shared_store_machines_collide(tmp_path, sandbox_factory):
    # The problem this feature solves (and proof the test above can fail): local windows.
    limit, window = 2, 30.0
    box = sandbox_factory("--rate-limit", str(limit), "--rate-window", str(window), "-q")
    envs = [machine(tmp_path, f"m{n}", box, "local", limit, window, CLOUDCHAT_MAX_RETRIES="0")
            for n in range(3)]
    codes = send_from(envs, 1) + send_from(envs, 1)
    assert 5 in codes and 429 in box.statuses()


@pytest.mark.e2e
def test_a_429_on_one_machine_blocks_the_others(tmp_path, sandbox_factory, redis_server):
    window = 3.0
    box = sandbox_factory("--rate-limit", "1", "--rate-window", str(window))
    b_env = machine(tmp_path, "b", box, redis_server.url, 1, window)
    c_env = machine(tmp_path, "c", box, redis_server.url, 1, window)
    outsider = httpx.post(box.base_url + "/messages",
                          headers={"Authorization": f"Bearer {TEST_KEY}"},
                          json={"channel": "whatsapp", "to": "6281234567890", "text": "x"})
    assert outsider.status_code == 201
    box.readline()
    b = subprocess.Popen([cloudchat_exe(), "send", "6281234567890", "B"], env=b_env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert "429" in box.readline()
    # B says it will retry only once the block is recorded for everyone (read it, don't race)
    assert "HTTP 429; retry 1/" in b.stderr.readline()
    limits = json.loads(run_cli("limits", "--json", env=c_env).stdout)
    assert limits["blocked_for"] > 0 and limits["shared_with"].startswith("every machine using")
    c = run_cli("send", "6281234567890", "C", env=c_env)  # must wait, not try and get a 429
    assert b.wait(30) == 0 and c.returncode == 0, (b.stderr.read(), c.stderr)
    statuses = box.statuses()
    assert statuses.count(429) == 1 and statuses.count(201) == 3


@pytest.mark.e2e
def test_redis_killed_mid_broadcast_stops_cleanly_and_resume_completes(
        tmp_path, sandbox_factory, redis_server):
    limit, window, rows = 3, 1.5, 12
    # The sandbox allows twice the client's limit: a Redis restarted empty forgets the window
    # (README), and this test is about failing closed and resuming, not about that.
    box = sandbox_factory("--rate-limit", str(2 * limit), "--rate-window", str(window))
    menv = machine(tmp_path, "a", box, redis_server.url, limit, window)
    path = make_csv(tmp_path, rows)
    journal = tmp_path / "journal.sqlite3"
    args = ["broadcast", str(path), "-t", TEMPLATE, "-y", "--json", "--journal", str(journal)]
    proc = subprocess.Popen([cloudchat_exe(), *args], env=menv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(limit):  # a first window's worth went out…
        assert "62812" in box.readline()
    redis_server.kill()  # …then the shared store dies
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert f"rate-limit store redis://127.0.0.1:{redis_server.port}/0" in err
    assert "CLOUDCHAT_RATE_STORE=local" in err and "resume with:" in err
    assert "Traceback" not in err
    counts = json.loads(out)
    # Nothing went out without a slot: every arrival is a row the journal calls sent.
    arrived = [r for r in box.records() if r["status"] == 201]
    assert counts["sent"] == len(arrived) and counts["unknown"] == 0
    assert counts["pending"] == rows - len(arrived) > 0
    redis_server.start()
    resumed = run_cli(*args, env=menv)
    assert resumed.returncode == 0, resumed.stderr
    texts = [r["request"]["text"] for r in box.records() if r["status"] == 201]
    assert sorted(texts) == sorted(TEMPLATE.format(name=f"Pelanggan {i}", order_id=f"ORD-{i}")
                                   for i in range(rows))
    assert 429 not in box.statuses()


@pytest.mark.e2e
def test_unreachable_store_send_exits_7_and_sends_nothing(tmp_path, sandbox, redis_server):
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    redis_server.kill()
    proc = run_cli("send", "6281234567890", "Halo",
                   env=machine(tmp_path, "a", sandbox, url, 60, 60))
    assert proc.returncode == 7
    assert f"redis://:****@127.0.0.1:{redis_server.port}/0" in proc.stderr
    assert "CLOUDCHAT_RATE_STORE=local" in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout
    assert sandbox.records() == []


@pytest.mark.e2e
def test_requirepass_url_works_and_the_password_never_shows(tmp_path, sandbox, redis_factory):
    server = redis_factory(password=PASSWORD)
    menv = machine(tmp_path, "a", sandbox, server.url, 60, 60)
    sent = run_cli("--debug", "send", "6281234567890", "Halo", env=menv)
    assert sent.returncode == 0, sent.stderr
    assert "rate store: redis://:****@127.0.0.1" in sent.stderr  # --debug names it, masked
    show = run_cli("config", "show", "--json", env=menv)
    shown = json.loads(show.stdout)["rate_store"]
    assert shown == {"value": f"redis://:****@127.0.0.1:{server.port}/0",
                     "source": "env (CLOUDCHAT_RATE_STORE)"}
    got = run_cli("config", "get", "rate_store", env=menv)
    limits = run_cli("limits", env=menv)
    assert "window shared by every machine using redis://:****@" in limits.stdout
    assert "1 of 60 slots used" in limits.stdout
    # The doctor's probe takes a slot too: with room for it, it need not wait out the window.
    doctor = run_cli("config", "doctor", "--json", env={**menv, "CLOUDCHAT_RATE_LIMIT": "2"})
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "rate store"]
    assert check["ok"] and "Redis " in check["detail"] and "round trip" in check["detail"]
    wrong = machine(tmp_path, "b", sandbox, server.url.replace(PASSWORD, "not-the-pass"),
                    60, 60)
    denied = run_cli("send", "6281234567890", "Halo", env=wrong)
    assert denied.returncode == 7 and "rate-limit store redis://:****@" in denied.stderr
    assert "refused the credentials" in denied.stderr
    bad_doctor = run_cli("config", "doctor", env=wrong)
    assert bad_doctor.returncode == 1 and "rate store" in bad_doctor.stdout
    for proc in (sent, show, got, limits, doctor, denied, bad_doctor):
        assert PASSWORD not in proc.stdout + proc.stderr
        assert "not-the-pass" not in proc.stdout + proc.stderr
    assert sandbox.statuses().count(201) == 1  # (the doctor probes of base_url are 404s)


@pytest.mark.e2e
def test_unix_socket_url(tmp_path, sandbox, redis_server):
    menv = machine(tmp_path, "a", sandbox, f"unix://{redis_server.socket}?db=2", 60, 60)
    assert run_cli("send", "6281234567890", "Halo", "-q", env=menv).returncode == 0
    import redis

    on_db2 = redis.Redis(unix_socket_path=str(redis_server.socket), db=2, decode_responses=True)
    assert [k for k in on_db2.keys("*") if k.startswith("cloudchat:{")]


def test_config_set_rate_store_refuses_a_password_in_argv(env):
    proc = run_cli("config", "set", "rate_store", f"redis://:{PASSWORD}@cache:6379/0", env=env)
    assert proc.returncode == 2 and "visible to other users" in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout
    assert run_cli("config", "get", "rate_store", env=env).stdout.strip() == "local"
    ok = run_cli("config", "set", "rate_store", "redis://cache.internal:6379/0", env=env)
    assert ok.returncode == 0
    show = json.loads(run_cli("config", "show", "--json", env=env).stdout)["rate_store"]
    assert show["value"] == "redis://cache.internal:6379/0" and show["source"].startswith("profile")


@pytest.mark.parametrize("value", ["memcached://h:11211", "redis://h:port/0", "redis://h/x"])
def test_bad_rate_store_is_exit_2(env, value):
    proc = run_cli("send", "6281234567890", "Halo", env={**env, "CLOUDCHAT_API_KEY": TEST_KEY,
                                                        "CLOUDCHAT_RATE_STORE": value})
    assert proc.returncode == 2 and "rate_store from CLOUDCHAT_RATE_STORE" in proc.stderr


MISSING_EXTRA = textwrap.dedent("""
    import sys
    sys.modules["redis"] = None  # as if `pip install cloudchat-cli` without [redis]
    from cloudchat_cli.app import main
    main(sys.argv[1:])
""")


@pytest.mark.e2e
def test_without_the_extra_a_redis_url_is_exit_2_with_the_install_command(tmp_path, sandbox):
    menv = machine(tmp_path, "a", sandbox, f"redis://:{PASSWORD}@127.0.0.1:1/0", 60, 60)
    proc = subprocess.run([sys.executable, "-c", MISSING_EXTRA, "send", "6281234567890", "x"],
                          env=menv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'cloudchat-cli[redis]'" in proc.stderr
    assert PASSWORD not in proc.stderr
    assert sandbox.records() == []


SKEWED_SENDER = textwrap.dedent("""
    import sys, time
    from cloudchat_cli.core.http import ApiClient
    from cloudchat_cli.core.throttle import Throttle
    from cloudchat_cli.core.throttle_redis import RedisStore, connect

    url, store_url, key, skew, count, limit, window = sys.argv[1:8]
    skew, count, limit, window = float(skew), int(count), int(limit), float(window)
    clock = lambda: time.time() + skew  # this machine's clock is `skew` seconds off
    store = RedisStore(connect(store_url), key, url=store_url, window=window, margin=0.05)
    throttle = Throttle(limit, window, store=store, margin=0.05, timeout=10, clock=clock)
    with ApiClient(url, key, throttle=throttle, clock=clock) as client:
        for i in range(count):
            client.request("POST", "messages", json_body={
                "channel": "whatsapp", "to": "6281234567890", "text": f"{skew} {i}"})
""")


@pytest.mark.e2e
def test_a_process_whose_clock_is_30s_off_keeps_the_window(tmp_path, sandbox_factory,
                                                           redis_server):
    limit, window, each = 3, 2.0, 4
    box = sandbox_factory("--rate-limit", str(limit), "--rate-window", str(window), "-q")
    procs = []
    for n, skew in enumerate((0.0, 30.0, -30.0)):
        (tmp_path / f"p{n}").mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", SKEWED_SENDER, box.base_url, redis_server.url, TEST_KEY,
             str(skew), str(each), str(limit), str(window)],
            env=base_env(tmp_path / f"p{n}"), stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    records = box.records()
    assert [r["status"] for r in records] == [201] * (3 * each)  # zero 429s
    assert max_in_window([r["ts"] for r in records], window) <= limit


@pytest.mark.e2e
def test_send_with_a_local_store_never_imports_redis(tmp_path, sandbox):
    from .test_ecosystem import loaded_heavy

    menv = machine(tmp_path, "a", sandbox, "local", 60, 60)
    assert not [m for m in loaded_heavy(menv, "send", "6281234567890", "x", "-q")
                if m.split(".")[0] == "redis"]
    menv_r = {**menv, "CLOUDCHAT_RATE_STORE": "redis://127.0.0.1:1/0"}
    # Positive evidence the check can see it: with a Redis store it is imported.
    assert "redis" in loaded_heavy(menv_r, "send", "6281234567890", "x", "-q")


@pytest.mark.e2e
def test_a_redis_cluster_node_url_works_for_every_machine(tmp_path, sandbox_factory,
                                                          redis_cluster):
    import redis

    limit, window = 2, 2.0
    box = sandbox_factory("--rate-limit", str(limit), "--rate-window", str(window), "-q")
    first = redis.Redis(port=redis_cluster[0].port, decode_responses=True)
    slot = first.execute_command("CLUSTER", "KEYSLOT", keys_for(TEST_KEY)[0])
    ranges = first.execute_command("CLUSTER", "SLOTS")  # [start, end, [host, port, id], …]
    owner = next(int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1]))
    # Point the machines at a node that does NOT hold the App's slot: they must follow MOVED.
    other = next(n for n in redis_cluster if n.port != owner)
    url = f"redis://127.0.0.1:{other.port}/0"
    envs = [machine(tmp_path, f"m{n}", box, url, limit, window) for n in range(2)]
    assert send_from(envs, 2) == [0] * 4
    # A broadcast's workers meet the MOVED answer together: one switches, none fails.
    bc = machine(tmp_path, "bc", box, url, limit, window)
    done = run_cli("broadcast", str(make_csv(tmp_path, 4)), "-t", TEMPLATE, "-y", "-q", env=bc)
    assert done.returncode == 0, done.stderr
    assert [r["status"] for r in box.records()] == [201] * 8
    assert max_in_window([r["ts"] for r in box.records()], window) <= limit
    on_owner = redis.Redis(port=owner, decode_responses=True).keys("cloudchat:{*")
    # The window, its meta and the broadcast's budget: all on the node holding the hash tag.
    kinds = {k.split("}:", 1)[1].split(":", 1)[0] for k in on_owner}
    assert {"slots", "meta"} <= kinds <= {"slots", "meta", "budget"}
    assert all(k.count("{") == 1 for k in on_owner)


@pytest.mark.e2e
def test_redis_dying_while_a_request_is_in_flight_does_not_fail_the_sent_message(
        tmp_path, sandbox_factory, redis_server):
    # The slot was held when the request went out; only its release fails. Reporting that as an
    # error would make a broadcast resend a delivered message: the slot expires by itself.
    box = sandbox_factory("--latency", "2")
    menv = machine(tmp_path, "a", box, redis_server.url, 60, 60)
    proc = subprocess.Popen([cloudchat_exe(), "send", "6281234567890", "Halo", "--json"],
                            env=menv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert "6281234567890" in box.readline()  # arrived; the answer comes in 2 s
    redis_server.kill()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["id"].startswith("msg_")


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl (.ci/run installs it)")
def test_rediss_url_verifies_the_servers_certificate(tmp_path, sandbox, redis_factory):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server = redis_factory(password=PASSWORD, tls=(cert, key))
    assert server.url.startswith("rediss://")
    menv = machine(tmp_path, "a", sandbox, server.url, 60, 60)
    untrusted = run_cli("send", "6281234567890", "Halo", env=menv)
    assert untrusted.returncode == 7 and "certificate verify failed" in untrusted.stderr
    assert f"rediss://:****@127.0.0.1:{server.port}/0" in untrusted.stderr
    trusted = run_cli("send", "6281234567890", "Halo", env={**menv, "SSL_CERT_FILE": str(cert)})
    assert trusted.returncode == 0, trusted.stderr
    assert sandbox.statuses() == [201]
    for proc in (untrusted, trusted):
        assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.e2e
def test_a_user_without_scripting_rights_is_a_clear_store_error(tmp_path, sandbox, redis_server):
    redis_server.client().execute_command("ACL", "SETUSER", "cron", "on", ">cron-pass-123",
                                          "~*", "+@all", "-@scripting")
    url = f"redis://cron:cron-pass-123@127.0.0.1:{redis_server.port}/0"
    menv = machine(tmp_path, "a", sandbox, url, 60, 60)
    proc = run_cli("send", "6281234567890", "Halo", env=menv)
    assert proc.returncode == 7 and "no permissions to run the 'evalsha'" in proc.stderr
    assert "+@scripting" in proc.stderr  # the hint names the rights the README lists
    assert f"rate-limit store redis://cron:****@127.0.0.1:{redis_server.port}/0 failed" \
        in proc.stderr
    doctor = run_cli("config", "doctor", env=menv)
    assert doctor.returncode == 1 and "FAIL rate store" in doctor.stdout
    for p in (proc, doctor):
        assert "cron-pass-123" not in p.stdout + p.stderr and "Traceback" not in p.stderr
    assert [r for r in sandbox.records() if r["method"] == "POST"] == []


@pytest.mark.e2e
def test_the_least_acl_the_readme_gives_is_enough(tmp_path, sandbox, redis_server):
    from cloudchat_cli.core.throttle_redis import ACL

    redis_server.client().execute_command("ACL", "SETUSER", "cron", "on", ">cron-pass-123",
                                          *ACL.split())
    url = f"redis://cron:cron-pass-123@127.0.0.1:{redis_server.port}/0"
    menv = machine(tmp_path, "a", sandbox, url, 1, 60)
    assert run_cli("send", "6281234567890", "Halo", env=menv).returncode == 0
    # block (429) and pacing paths, the window's state, and the doctor, as that user:
    assert run_cli("send", "6281234567890", "two", "--no-wait", env=menv).returncode == 5
    assert json.loads(run_cli("limits", "--json", env=menv).stdout)["used"] == 1
    # The doctor's probe takes a slot too: with room for it, it need not wait out the window.
    doctor = run_cli("config", "doctor", "--json", env={**menv, "CLOUDCHAT_RATE_LIMIT": "2"})
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "rate store"]
    assert check["ok"], check


def test_something_else_on_the_port_is_a_clear_store_error(tmp_path, sandbox):
    # An HTTP server (the sandbox) where Redis should be: garbage answers, not a traceback.
    port = sandbox.base_url.split(":")[2].split("/")[0]
    # The sandbox waits for the rest of an HTTP request: the store's timeout ends the wait.
    menv = machine(tmp_path, "a", sandbox, f"redis://127.0.0.1:{port}/0", 60, 60,
                   CLOUDCHAT_TIMEOUT="0.5")
    proc = run_cli("send", "6281234567890", "Halo", env=menv)
    assert proc.returncode == 7, proc.stderr
    assert f"rate-limit store redis://127.0.0.1:{port}/0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [r for r in sandbox.records() if r.get("status") == 201] == []


@pytest.mark.e2e
def test_a_hung_redis_times_out_and_sends_nothing(tmp_path, sandbox, redis_server):
    import signal

    menv = machine(tmp_path, "a", sandbox, redis_server.url, 60, 60, CLOUDCHAT_TIMEOUT="0.5")
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        proc = run_cli("send", "6281234567890", "Halo", env=menv)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert proc.returncode == 7 and "is unreachable" in proc.stderr, proc.stderr
    assert "nothing was sent" in proc.stderr and sandbox.records() == []
