"""One smoke test per command: the installed ``cloudchat``, as a subprocess, against a
``cloudchat sandbox`` process — exactly what a user runs. Every other command test runs
in-process (tests/inprocess.py); these keep the console script, its start-up shortcuts
(``--version``, ``exit_now``) and real pipes covered."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import TEST_KEY, run_cli

pytestmark = pytest.mark.e2e

SECRET = "whsec_smoke_0123456789"
TO = "6281234567890"


def cloudchat(*args: str, env: dict[str, str], input: str | None = None):
    return run_cli(*args, env=env, input=input, process=True)


@pytest.fixture
def user(env, sandbox_process) -> dict[str, str]:
    """A user's shell: the sandbox as base_url, a test key, a limit nothing waits for."""
    return {**env, "CLOUDCHAT_BASE_URL": sandbox_process.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_RATE_LIMIT": "1000", "CLOUDCHAT_RATE_WINDOW": "1"}


@pytest.fixture
def receiver():
    """The user's webhook endpoint: records each POST (headers, body) and answers 200."""
    got: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.put((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                     daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.got = got
    yield server
    server.shutdown()
    server.server_close()


def test_version_is_answered_by_the_console_script(env):
    proc = cloudchat("--version", env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("cloudchat-cli ")


def test_send(user, sandbox_process):
    proc = cloudchat("send", TO, "Halo", "--json", env=user)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == sandbox_process.records()[0]["id"]


def test_broadcast(tmp_path, user, sandbox_process):
    path = tmp_path / "list.csv"
    path.write_text("to,name\n6281234567801,Ani\n6281234567802,Budi\n", encoding="utf-8")
    report = tmp_path / "report.csv"
    proc = cloudchat("broadcast", str(path), "-t", "Halo {name}", "--yes", "--report",
                     str(report), env=user)
    assert proc.returncode == 0, proc.stderr
    texts = sorted(r["request"]["text"] for r in sandbox_process.records())
    assert texts == ["Halo Ani", "Halo Budi"]
    assert report.read_text(encoding="utf-8").count(",sent,") == 2


def test_webhook_trigger_then_verify(tmp_path, env, receiver):
    wenv = {**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET}
    proc = cloudchat("webhook", "trigger", receiver.url, "--set", "data.text=Halo", env=wenv)
    assert proc.returncode == 0, proc.stderr
    headers, body = receiver.got.get(timeout=30)
    signature = headers["X-CloudChat-Signature"]
    assert signature == hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    (tmp_path / "body.json").write_bytes(body)
    ok = cloudchat("webhook", "verify", "--signature", signature, str(tmp_path / "body.json"),
                   env=wenv)
    assert ok.returncode == 0, ok.stderr
    bad = cloudchat("webhook", "verify", "--signature", "0" * 64, str(tmp_path / "body.json"),
                    env=wenv)
    assert bad.returncode == 1


def test_optout(user, sandbox_process):
    assert cloudchat("optout", "add", TO, "--note", "STOP", env=user).returncode == 0
    listed = cloudchat("optout", "list", "--json", env=user)
    assert listed.returncode == 0 and TO in listed.stdout
    refused = cloudchat("send", TO, "Halo", env=user)
    assert refused.returncode == 2 and sandbox_process.records() == []


def test_config(user):
    assert cloudchat("config", "set", "default_channel", "telegram", env=user).returncode == 0
    shown = cloudchat("config", "show", env=user)
    assert shown.returncode == 0 and "telegram" in shown.stdout
    doctor = cloudchat("config", "doctor", env=user)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def test_api(user):
    sent = json.loads(cloudchat("send", TO, "Halo", "--json", env=user).stdout)
    proc = cloudchat("api", "GET", f"messages/{sent['id']}", env=user)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == sent["id"]


def test_limits(user):
    assert cloudchat("send", TO, "Halo", "-q", env=user).returncode == 0
    proc = cloudchat("limits", "--json", env=user)
    assert proc.returncode == 0 and json.loads(proc.stdout)["used"] == 1


def test_sandbox_process_serves_prints_emits_and_stops(env, sandbox_factory, receiver):
    wenv = {**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET}
    box = sandbox_factory("--webhook-url", receiver.url, "--status-delay", "0", env=wenv,
                          process=True)
    user = {**wenv, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    assert cloudchat("send", TO, "Halo", "-q", env=user).returncode == 0
    assert "→ 6281234567890" in box.readline()  # one line per accepted message
    root = box.base_url.removesuffix("/api/public/v1")
    inbound = cloudchat("sandbox", "inbound", "--url", root, "--text", "Mau pesan", env=user)
    assert inbound.returncode == 0, inbound.stderr
    events = [json.loads(receiver.got.get(timeout=30)[1])["event"] for _ in range(4)]
    assert sorted(events) == ["message.received", "message.status", "message.status",
                              "message.status"]
    assert box.stop() == 0
    assert "Traceback" not in box.proc.stderr.read()


def test_completion(env):
    proc = cloudchat("completion", "bash", env=env)
    assert proc.returncode == 0 and "cloudchat" in proc.stdout and "complete" in proc.stdout
