"""End to end: `cloudchat webhook` verify/sign/trigger/listen and the sandbox's webhooks."""

import json
import queue
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from cloudchat_cli.services.webhooks.signature import sign

from .conftest import TEST_KEY, cloudchat_exe, run_cli

SECRET = "whsec_e2e_secret_0123456789"


def event_body(event_id="evt_e2e_1", text="Halo", ts=1700000000) -> bytes:
    return json.dumps({"event": "message.received", "id": event_id, "timestamp": ts,
                       "channel": "whatsapp", "session_id": "s",
                       "data": {"from": "6281234567890", "pushName": "John", "text": text,
                                "media": None}}).encode()


# --- a small local receiver (the user's app) ---------------------------------------------------


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    statuses: list = field(default_factory=list)  # answers to give, in order (then 200)
    requests: queue.Queue = field(default_factory=queue.Queue)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver():
    box: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec = box["r"]
            status = rec.statuses.pop(0) if rec.statuses else 200
            rec.requests.put({"body": body, "headers": dict(self.headers), "status": status})
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                 daemon=True).start()
    yield box["r"]
    server.shutdown()
    server.server_close()


# --- verify and sign -------------------------------------------------------------------------


def test_verify_valid_invalid_and_exit_codes(tmp_path, wenv):
    body = tmp_path / "body.json"
    body.write_bytes(event_body())
    good = sign(SECRET, event_body())
    proc = run_cli("webhook", "verify", str(body), "--signature", good, env=wenv)
    assert proc.returncode == 0 and "valid signature" in proc.stdout
    assert "from 6281234567890 (John): Halo" in proc.stdout
    bad = run_cli("webhook", "verify", str(body), "--signature", "0" * 64, env=wenv)
    assert bad.returncode == 1 and "invalid signature" in bad.stderr
    piped = run_cli("webhook", "verify", "-", "-s", "sha256=" + good.upper(), "--json",
                    input=event_body(), env=wenv)
    result = json.loads(piped.stdout)
    assert piped.returncode == 0 and result["valid"] and result["event"]["id"] == "evt_e2e_1"
    stale = run_cli("webhook", "verify", str(body), "-s", good, "--max-age", "300", env=wenv)
    assert stale.returncode == 1 and "stale" in stale.stderr


def test_verify_without_secret_or_input_exit_2(tmp_path, env, wenv):
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    proc = run_cli("webhook", "verify", str(body), "-s", "0" * 64, env=env)
    assert proc.returncode == 2 and "no webhook secret" in proc.stderr
    proc = run_cli("webhook", "verify", str(tmp_path / "missing"), "-s", "0" * 64, env=wenv)
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    proc = run_cli("webhook", "verify", str(body), "-s", "0" * 64, "--secret", SECRET, env=wenv)
    assert proc.returncode == 2 and SECRET not in proc.stdout + proc.stderr


def test_verify_secret_file_with_rotation(tmp_path, env):
    secrets = tmp_path / "secrets"
    secrets.write_text(f"whsec_old_rotation_000\n{SECRET}\n")
    secrets.chmod(0o600)
    body = tmp_path / "body.json"
    body.write_bytes(event_body())
    proc = run_cli("webhook", "verify", str(body), "-s", sign(SECRET, event_body()),
                   "--secret-file", str(secrets), env=env)
    assert proc.returncode == 0 and "secret 2 of 2" in proc.stdout


def test_verify_captured_request(tmp_path, wenv):
    body = event_body()
    raw = (b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"X-CloudChat-Signature: " + sign(SECRET, body).encode() + b"\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    path = tmp_path / "captured.http"
    path.write_bytes(raw)
    assert run_cli("webhook", "verify", "--request", str(path), env=wenv).returncode == 0
    path.write_bytes(raw.replace(b"Halo", b"HALO"))
    assert run_cli("webhook", "verify", "--request", str(path), env=wenv).returncode == 1
    path.write_bytes(b"junk")
    assert run_cli("webhook", "verify", "--request", str(path), env=wenv).returncode == 2


def test_sign_prints_the_signature(tmp_path, wenv):
    proc = run_cli("webhook", "sign", "-", input=event_body(), env=wenv)
    assert proc.stdout.strip() == sign(SECRET, event_body())


# --- trigger ---------------------------------------------------------------------------------


def test_trigger_retries_500_then_succeeds(receiver, wenv):
    receiver.statuses = [500]
    proc = run_cli("webhook", "trigger", receiver.url, "--event", "message.received",
                   "--set", "data.text=Tes trigger", env=wenv, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "attempt 1: HTTP 500" in proc.stderr and "retrying in 2 s" in proc.stderr
    first, second = receiver.requests.get_nowait(), receiver.requests.get_nowait()
    assert first["body"] == second["body"]  # same event id and bytes on the retry
    event = json.loads(second["body"])
    assert event["data"]["text"] == "Tes trigger" and event["id"].startswith("evt_")
    assert second["headers"]["X-CloudChat-Signature"] == sign(SECRET, second["body"])


def test_trigger_no_retry_exit_6(receiver, wenv):
    receiver.statuses = [503, 503]
    proc = run_cli("webhook", "trigger", receiver.url, "--no-retry", env=wenv)
    assert proc.returncode == 6 and receiver.requests.qsize() == 1


# --- listen ----------------------------------------------------------------------------------


class Listener:
    def __init__(self, env, *args):
        self.proc = subprocess.Popen(
            [cloudchat_exe(), "webhook", "listen", "--port", "0", "--json", *args], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert "Listening on" in line, line + self.proc.stderr.read()
        self.url = line.split("Listening on ", 1)[1].split(" ")[0]
        self.lines: queue.Queue = queue.Queue()
        self.errors: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors),
                         daemon=True).start()

    @staticmethod
    def _pump(stream, out):
        for line in stream:
            out.put(line)

    def event(self, timeout=30) -> dict:
        return json.loads(self.lines.get(timeout=timeout))

    def error_line(self, needle, timeout=30) -> str:
        while True:
            line = self.errors.get(timeout=timeout)
            if needle in line:
                return line

    def post(self, body: bytes, sig: str | None = "auto", **kw) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if sig == "auto":
            sig = sign(SECRET, body)
        if sig is not None:
            headers["X-CloudChat-Signature"] = sig
        return httpx.post(self.url, content=body, headers=headers, timeout=10, **kw)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        return self.proc.returncode


@pytest.fixture
def listener_factory(wenv):
    started = []

    def factory(*args, env=None):
        item = Listener(env or wenv, *args)
        started.append(item)
        return item

    yield factory
    for item in started:
        item.stop()


@pytest.mark.e2e
def test_listen_verifies_dedupes_saves_and_verify_dir(tmp_path, wenv, listener_factory):
    events_dir = tmp_path / "events"
    lis = listener_factory("--save", str(events_dir))
    assert lis.post(event_body("evt_a")).status_code == 200
    got = lis.event()
    assert (got["status"], got["id"], got["verified"]) == ("accepted", "evt_a", True)
    again = lis.post(event_body("evt_a"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert lis.event()["status"] == "duplicate"
    assert lis.post(event_body("../../evil\x00id" + "x" * 500)).status_code == 200
    lis.event()
    files = sorted(p.name for p in events_dir.iterdir())
    assert len(files) == 2 and all("/" not in f and ".." not in f[:2] for f in files)
    check = run_cli("webhook", "verify", "--dir", str(events_dir), "--json", env=wenv)
    assert check.returncode == 0 and [r["valid"] for r in json.loads(check.stdout)] == [True] * 2
    assert lis.stop() == 0


@pytest.mark.e2e
def test_listen_answers_500_when_the_save_fails_and_takes_the_retry(tmp_path, listener_factory):
    from cloudchat_cli.services.webhooks.store import event_key

    events_dir = tmp_path / "events"
    lis = listener_factory("--save", str(events_dir))
    blocker = events_dir / f"{event_key('evt_blocked', b'')}.json"
    blocker.mkdir()  # the event's file cannot be created: the disk "refuses" this save
    first = lis.post(event_body("evt_blocked"))
    assert first.status_code == 500 and "could not save the event" in first.json()["error"]
    assert "500 rejected" in lis.error_line("could not save the event")
    assert lis.post(event_body("evt_fine")).status_code == 200  # others are unaffected
    assert lis.event()["status"] == "accepted"
    blocker.rmdir()
    retry = lis.post(event_body("evt_blocked"))  # CloudChat retries the 500: not a duplicate
    assert retry.status_code == 200 and retry.json()["status"] == "ok"
    assert lis.event()["status"] == "accepted"
    assert json.loads(blocker.read_text())["id"] == "evt_blocked"


@pytest.mark.e2e
def test_listen_verifies_a_large_body_off_the_event_loop(listener_factory):
    lis = listener_factory("--max-body", str(4 * 1024 * 1024))
    body = event_body(text="x" * (3 * 1024 * 1024))
    assert lis.post(body).status_code == 200
    assert lis.post(body, sig=sign("whsec_wrong_000000000000", body)).status_code == 401


@pytest.mark.e2e
@pytest.mark.parametrize(("kind", "status"), [
    ("no signature", 401), ("bad signature", 401), ("not json", 400), ("too big", 413),
    ("get", 405), ("max body exactly", 200), ("one over max body", 413),
])
def test_listen_rejects_bad_deliveries(listener_factory, kind, status):
    lis = listener_factory("--max-body", "2048")
    exact = event_body(text="x" * (2048 - len(event_body(text=""))))
    assert len(exact) == 2048
    if kind == "no signature":
        response = lis.post(event_body(), sig=None)
    elif kind == "bad signature":
        response = lis.post(event_body(), sig=sign("whsec_wrong_000000000000", event_body()))
    elif kind == "not json":
        response = lis.post(b"not json at all")
    elif kind == "too big":
        response = lis.post(b"x" * (2 * 1024 * 1024))
    elif kind == "get":
        response = httpx.get(lis.url)
    elif kind == "max body exactly":
        response = lis.post(exact)
    else:
        response = lis.post(exact + b" ")
    assert response.status_code == status
    if status != 200:
        assert "rejected" in lis.error_line(f"{status} rejected")


@pytest.mark.e2e
def test_stalled_client_does_not_block_others(listener_factory):
    lis = listener_factory("--read-timeout", "30")
    host, port = lis.url.split("//")[1].split("/")[0].split(":")
    stalled = socket.create_connection((host, int(port)))
    stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
    try:
        assert lis.post(event_body("evt_while_stalled")).status_code == 200
        assert lis.event()["id"] == "evt_while_stalled"
    finally:
        stalled.close()


@pytest.mark.e2e
def test_forward_to_app_up_and_down(tmp_path, wenv, listener_factory, receiver):
    lis = listener_factory("--forward-to", receiver.url, "--forward-retry-delays", "0.1,0.1",
                           "--forward-max-delay", "0.2")
    body = event_body("evt_fwd")
    assert lis.post(body).status_code == 200
    forwarded = receiver.requests.get(timeout=10)
    assert forwarded["body"] == body
    assert forwarded["headers"]["X-CloudChat-Signature"] == sign(SECRET, body)
    receiver.statuses = [500, 500, 500, 503]  # the app is "down" for four attempts
    assert lis.post(event_body("evt_later")).status_code == 200
    assert "HTTP 500" in lis.error_line("is not taking events")
    tries = [receiver.requests.get(timeout=10) for _ in range(5)]
    assert [t["status"] for t in tries] == [500, 500, 500, 503, 200]
    assert {t["body"] for t in tries} == {event_body("evt_later")}  # never given up
    lis.error_line("is back")


def test_port_in_use_exit_2(wenv):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = run_cli("webhook", "listen", "--port", str(s.getsockname()[1]), env=wenv)
    assert proc.returncode == 2 and "cannot listen" in proc.stderr


# --- the sandbox sends webhooks ----------------------------------------------------------------


@pytest.mark.e2e
def test_sandbox_to_listener_status_events_and_inbound(tmp_path, wenv, sandbox_factory,
                                                       listener_factory):
    lis = listener_factory("--save", str(tmp_path / "events"))
    box = sandbox_factory("--webhook-url", lis.url, "--status-delay", "0.05", env=wenv)
    cenv = {**wenv, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    sent = run_cli("send", "6281234567890", "Halo", "--json", env=cenv)
    message_id = json.loads(sent.stdout)["id"]
    statuses = [lis.event() for _ in range(3)]
    assert [e["event"]["data"]["status"] for e in statuses] == ["sent", "delivered", "read"]
    assert {e["event"]["data"]["message_id"] for e in statuses} == {message_id}
    root = box.base_url.split("/api/")[0]
    inbound = run_cli("sandbox", "inbound", "--url", root, "--text", "Mau pesan", "--name", "Ani",
                      env=cenv)
    assert inbound.returncode == 0
    got = lis.event()
    assert got["event"]["event"] == "message.received" and got["id"] == inbound.stdout.strip()
    failing = run_cli("send", "6281234569999", "Halo", env=cenv)
    assert failing.returncode == 0
    assert [lis.event()["event"]["data"]["status"] for _ in range(2)] == ["sent", "failed"]
    check = run_cli("webhook", "verify", "--dir", str(tmp_path / "events"), env=wenv)
    assert check.returncode == 0


def test_sandbox_retries_a_failing_receiver_with_the_same_event(wenv, sandbox_factory, receiver):
    receiver.statuses = [500]
    box = sandbox_factory("--webhook-url", receiver.url, "--status-delay", "0", env=wenv)
    root = box.base_url.split("/api/")[0]
    assert run_cli("sandbox", "inbound", "--url", root, "--text", "x", env=wenv).returncode == 0
    first = receiver.requests.get(timeout=10)
    second = receiver.requests.get(timeout=10)  # after the vendor's 2 s backoff
    assert first["status"] == 500 and second["status"] == 200
    assert first["body"] == second["body"]
    assert second["headers"]["X-CloudChat-Signature"] == sign(SECRET, second["body"])


@pytest.mark.e2e
def test_exec_runs_per_event_with_the_body_on_stdin(tmp_path, listener_factory):
    out = tmp_path / "exec-out"
    lis = listener_factory("--exec", f"sh -c 'cat >> {out}; echo >> {out}'")
    bodies = [event_body("evt_x1"), event_body("evt_x2")]
    for body in bodies:
        assert lis.post(body).status_code == 200
    assert lis.post(bodies[0]).json()["status"] == "duplicate"  # not run again
    assert lis.stop() == 0  # stopping drains the queue of events still to run
    assert out.read_bytes() == b"".join(body + b"\n" for body in bodies)
