"""End to end: `cloudchat api` like `gh api` — whole bodies or failure, flags, error bodies."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import TEST_KEY, run_cli

BIG = 3 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    """A server we control: big bodies, non-JSON errors, and a record of request headers."""

    seen: list[dict] = []

    def log_message(self, *args):
        pass

    def _send(self, status, body: bytes, kind="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-RateLimit-Remaining", "41")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Handler.seen.append({"path": self.path, "headers": dict(self.headers)})
        route = self.path.split("/api/", 1)[-1]
        if route == "big":
            items = [{"n": i, "pad": "x" * 90} for i in range(BIG // 100)]
            self._send(200, json.dumps(items).encode())
        elif route == "almost":
            self._send(200, json.dumps({"pad": "é" * 400_000}, ensure_ascii=False).encode())
        elif route == "html502":
            self._send(502, b"<html><body>Bad gateway</body></html>", "text/html")
        else:
            self._send(200, b'{"ok": true, "n": 1.0}')


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.seen = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                 daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def aenv(env, server):
    return {**env, "CLOUDCHAT_BASE_URL": server, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_MAX_RETRIES": "0"}


def test_a_body_over_the_read_cap_fails_instead_of_printing_part(aenv):
    proc = run_cli("api", "GET", "big", env=aenv)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "larger than 1 MiB" in proc.stderr and "nothing was printed" in proc.stderr


def test_a_2xx_body_is_printed_whole_and_exact(aenv):
    proc = run_cli("api", "almost", env=aenv)  # -X defaults to GET
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"pad": "é" * 400_000}
    exact = run_cli("api", "small", env=aenv)
    assert exact.stdout == '{"ok": true, "n": 1.0}\n'  # piped: the bytes as sent, not re-encoded


@pytest.mark.parametrize("path", ["http:host:1/x", "localhost:1/x", "https://evil.example/x",
                                  "//evil.example/x", "user@evil.example/x", "\\\\evil\\x",
                                  "HTTP:evil:80/x"])
def test_scheme_or_host_like_paths_are_refused(aenv, path):
    proc = run_cli("api", "GET", path, env=aenv)
    assert proc.returncode == 2 and "looks like a URL or host:port" in proc.stderr
    assert Handler.seen == []


def test_include_shows_status_and_rate_limit_headers(aenv):
    proc = run_cli("api", "-i", "small", env=aenv)
    head, _, body = proc.stdout.partition("\n\n")
    assert head.splitlines()[0] == "HTTP/1.1 200 OK"
    assert "x-ratelimit-remaining: 41" in head.splitlines()
    assert json.loads(body) == {"ok": True, "n": 1.0}


def test_header_flag_and_authorization_refused(aenv):
    proc = run_cli("api", "small", "-H", "X-Trace-Id: abc:123", "-H", "Accept-Language:id",
                   env=aenv)
    assert proc.returncode == 0, proc.stderr
    sent = Handler.seen[-1]["headers"]
    assert sent["X-Trace-Id"] == "abc:123" and sent["Accept-Language"] == "id"
    assert sent["Authorization"] == f"Bearer {TEST_KEY}"
    before = len(Handler.seen)
    for bad in ("Authorization: Bearer sk_live_x", "authorization:x", "Host: evil",
                "Content-Length: 1", "no colon", "X-A: b\nc"):
        proc = run_cli("api", "small", "-H", bad, env=aenv)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert "sk_live_x" not in proc.stderr
    assert len(Handler.seen) == before


def test_non_json_error_body_goes_to_stdout_as_json(aenv):
    proc = run_cli("api", "html502", env=aenv)
    assert proc.returncode == 6
    assert json.loads(proc.stdout) == {
        "error": {"status": 502, "body": "<html><body>Bad gateway</body></html>"}}
    assert "HTTP 502" in proc.stderr and "{" not in proc.stderr.splitlines()[0][:7]


def test_sandbox_errors_and_methods(env, sandbox):
    cenv = {**env, "CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    missing = run_cli("api", "GET", "nope", env=cenv)
    assert missing.returncode == 4
    assert json.loads(missing.stdout)["error"]["type"] == "not_found"
    assert "HTTP 404" in missing.stderr
    posted = run_cli("api", "-X", "POST", "messages", "-f", "channel=telegram", "-f",
                     "to=@alice_bot", "-f", "text=Halo", env=cenv)
    assert posted.returncode == 0 and json.loads(posted.stdout)["channel"] == "telegram"
    implied = run_cli("api", "messages", "-f", "channel=telegram", "-f", "to=@alice_bot",
                      "-f", "text=Halo", env=cenv)  # fields imply POST, like gh api
    assert implied.returncode == 0 and json.loads(implied.stdout)["status"] == "queued"
    assert [r["method"] for r in sandbox.records()] == ["GET", "POST", "POST"]
    clash = run_cli("api", "GET", "messages", "-X", "POST", env=cenv)
    assert clash.returncode == 2 and "two methods" in clash.stderr
