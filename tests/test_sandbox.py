"""The sandbox itself, over real HTTP: contract, auth, limits, faults, record, shutdown."""

import concurrent.futures
import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from cloudchat_cli.sandbox.ratelimit import RollingWindow

from .conftest import TEST_KEY, cloudchat_exe, run_cli
from .fakes import FakeClock

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
MSG = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "Halo"}


def post(box, body=MSG, headers=AUTH, path="/messages"):
    return httpx.post(box.base_url + path, json=body, headers=headers, timeout=10)


def test_accepts_and_lists_messages(sandbox):
    r = post(sandbox)
    assert r.status_code == 201
    body = r.json()
    assert body["id"].startswith("msg_") and body["status"] == "queued"
    assert r.headers["X-RateLimit-Limit"] == "60" and r.headers["X-RateLimit-Remaining"] == "59"
    listed = httpx.get(sandbox.base_url.split("/api/")[0] + "/_sandbox/messages").json()
    assert listed["count"] == 1 and listed["messages"][0]["id"] == body["id"]
    record = sandbox.records()[0]
    assert {"ts", "method", "path", "status", "request"} <= set(record)
    assert (record["method"], record["path"], record["status"]) == ("POST",
                                                                   "/api/public/v1/messages", 201)
    assert record["request"] == MSG
    assert TEST_KEY not in sandbox.record_path.read_text()


@pytest.mark.parametrize(("body", "param"), [
    ({**MSG, "channel": "sms"}, "channel"),
    ({k: v for k, v in MSG.items() if k != "to"}, "to"),
    ({**MSG, "to": "+62 812"}, "to"),
    ({**MSG, "text": ""}, "text"),
    ({**MSG, "text": "x" * 4097}, "text"),
    ({**MSG, "type": "image"}, "media"),
    ({**MSG, "type": "image", "media": {"url": "http://x/a.jpg"}}, "media.url"),
    ({**MSG, "type": "sticker"}, "type"),
    ([1, 2], "body"),
])
def test_field_specific_400(sandbox, body, param):
    r = post(sandbox, body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param and r.json()["error"]["code"] == 400


def test_invalid_json_400(sandbox):
    r = httpx.post(sandbox.base_url + "/messages", content=b"{nope", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"


def test_auth(sandbox_factory):
    box = sandbox_factory("--key", "sk_live_only_this_one")
    assert post(box, headers={}).status_code == 401
    assert post(box, headers={"Authorization": "Basic abc"}).status_code == 401
    assert post(box).status_code == 401  # a test key, but not the one given
    ok = post(box, headers={"Authorization": "Bearer sk_live_only_this_one"})
    assert ok.status_code == 201


def test_unknown_path_json_404_and_405(sandbox):
    r = httpx.get(sandbox.base_url + "/nothing", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = httpx.get(sandbox.base_url + "/messages")
    assert r.status_code == 405


def test_rate_limit_headers_and_429(sandbox_factory):
    box = sandbox_factory("--rate-limit", "2", "--rate-window", "30")
    assert [post(box).status_code for _ in range(2)] == [201, 201]
    r = post(box)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limited"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert 28 <= int(r.headers["Retry-After"]) <= 30
    assert int(r.headers["X-RateLimit-Reset"]) == int(r.headers["Retry-After"])
    # another key has its own window
    other = post(box, headers={"Authorization": "Bearer sk_test_someone_else_0000"})
    assert other.status_code == 201


def test_fail_rate_one_gives_500(sandbox_factory):
    box = sandbox_factory("--fail-rate", "1")
    assert post(box).status_code == 500
    assert box.statuses() == [500]


def test_drop_rate_hangs_up(sandbox_factory):
    box = sandbox_factory("--drop-rate", "1")
    with pytest.raises(httpx.RemoteProtocolError):
        post(box)
    assert box.records()[0]["dropped"] is True


def test_concurrent_connections(sandbox_factory):
    """Requests are served side by side, not one connection at a time.

    The sandbox sleeps --latency between recording a request and answering it. A server that
    handled one connection at a time records request k+1 only after answering request k, so
    before any client has its answer it can have recorded at most two requests (the second
    racing the first answer to the client). Three or more arrivals before the first answer
    prove overlap. The test asserts that order (server arrival vs client receipt, one machine
    clock), not how fast a loaded machine connects 20 sockets.
    """
    box = sandbox_factory("--latency", "1", "--rate-limit", "100")

    def one(_):
        status = post(box).status_code
        return status, time.time()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert [status for status, _ in results] == [201] * 20
    first_answer = min(received for _, received in results)
    arrivals = sorted(r["ts"] for r in box.records())
    assert len(arrivals) == 20
    assert sum(ts < first_answer for ts in arrivals) >= 3


@pytest.mark.e2e
def test_sigterm_stops_cleanly(sandbox_factory):
    box = sandbox_factory(process=True)
    post(box)
    assert box.stop() == 0
    err = box.proc.stderr.read()
    assert "Traceback" not in err and "stopped" in err.lower()


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_right_after_start_up_stops_it(env, tmp_path, signum):
    """A stop signal at any moment stops the sandbox, even one sent as soon as it prints its
    URL (the handler raised an exception wherever the main thread was, and library code could
    swallow it: a sandbox that ignored SIGTERM until killed)."""
    for _ in range(8):
        proc = subprocess.Popen([cloudchat_exe(), "sandbox", "--port", "0"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert "listening on" in proc.stdout.readline()
        proc.send_signal(signum)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the sandbox ignored the signal")
        assert proc.returncode == 0 and "stopped" in err.lower() and "Traceback" not in err


def test_port_in_use_exit_2(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli("sandbox", "--port", str(port), env=env, timeout=20)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_prints_accepted_messages(sandbox):
    post(sandbox)
    line = sandbox.readline()
    assert "whatsapp" in line and "6281234567890" in line and "'Halo'" in line


def test_rolling_window_unit():
    clock = FakeClock(0)
    window = RollingWindow(2, 10, clock)
    assert window.admit("k").allowed and window.admit("k").allowed
    denied = window.admit("k")
    assert not denied.allowed and denied.reset == 10
    clock.advance(5)
    assert not window.admit("k").allowed  # rejected requests are not counted…
    clock.advance(5)
    assert window.admit("k").allowed  # …so the window frees exactly 10 s after the first
    assert json.dumps(denied.headers())


def test_sandbox_signs_with_its_own_hmac_github_vector():
    """GitHub's published test vector (a secret with spaces, a body with a comma)."""
    from cloudchat_cli.sandbox.webhooks import sign

    assert sign("It's a Secret to Everybody", b"Hello, World!") == (
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


@pytest.mark.e2e
def test_sandbox_does_not_import_the_clients_webhook_or_message_code():
    """Emulator and client must not share bugs: the sandbox has its own HTTP front end,
    validation and signing."""
    code = ("import sys, cloudchat_cli.sandbox.server, cloudchat_cli.sandbox.webhooks; "
            "print(sorted(m for m in sys.modules if m.startswith('cloudchat_cli.services')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_unknown_path_checks_the_key_first(sandbox_factory):
    """The probe `config doctor` sends: 404 for a good key, 401 for a bad or missing one."""
    box = sandbox_factory("--key", "sk_live_only_this_one")
    url = box.base_url + "/messages/doctor-probe"
    good = httpx.get(url, headers={"Authorization": "Bearer sk_live_only_this_one"})
    assert good.status_code == 404 and good.json()["error"]["type"] == "not_found"
    for headers in ({}, {"Authorization": "Bearer sk_live_wrong"}, AUTH):
        bad = httpx.get(url, headers=headers)
        assert bad.status_code == 401 and bad.json()["error"]["type"] == "unauthorized"
    assert box.statuses() == [404, 401, 401, 401]
    assert httpx.get(box.base_url.rsplit("/api/", 1)[0] + "/elsewhere").status_code == 404
