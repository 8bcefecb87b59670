"""`cloudchat webhook verify`: bad input is exit 2, replays are refused, captures parse strictly."""

import json
import time

import pytest

from cloudchat_cli.services.webhooks.signature import sign

from .conftest import run_cli
from .test_e2e_webhook import SECRET, event_body


@pytest.fixture
def wenv(env):
    return {**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET}


@pytest.mark.parametrize(("signature", "message"), [
    ("not-a-signature", "not a SHA-256 digest"), ("sha256=", "signature is empty"),
    ("ab" * 31, "not a SHA-256 digest"), ("zz" * 32, "not a SHA-256 digest"),
])
def test_a_malformed_signature_is_bad_input(tmp_path, wenv, signature, message):
    body = tmp_path / "body.json"
    body.write_bytes(event_body())
    proc = run_cli("webhook", "verify", str(body), "--signature", signature, env=wenv)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("stamp", "message"), [
    ("NaN", "not a finite number"), ("1e999", "not a finite number"),
    ("FUTURE", "in the future"),
])
def test_max_age_refuses_non_finite_and_future_timestamps(tmp_path, wenv, stamp, message):
    stamp = str(int(time.time()) + 3600) if stamp == "FUTURE" else stamp
    data = b'{"id":"evt_replay","timestamp":' + stamp.encode() + b"}"
    body = tmp_path / "body.json"
    body.write_bytes(data)
    proc = run_cli("webhook", "verify", str(body), "-s", sign(SECRET, data), "--max-age", "300",
                   "--json", env=wenv)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert not result["valid"] and message in result["reason"]


def capture(body: bytes, *, extra: bytes = b"", framing: bytes | None = None) -> bytes:
    framing = b"Content-Length: %d\r\n" % len(body) if framing is None else framing
    return (b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-CloudChat-Signature: "
            + sign(SECRET, body).encode() + b"\r\n" + extra + framing + b"\r\n")


@pytest.mark.parametrize(("raw", "message"), [
    (capture(event_body(), extra=b"Content-Length: 5\r\n") + event_body(), "conflicting"),
    (capture(b"{}", framing=b"Content-Length: +2\r\n") + b"{}", "bad Content-Length"),
    (capture(b"{}", framing="Content-Length: ²\r\n".encode()) + b"{}", "bad Content-Length"),
    (capture(b"{}", framing=b"Transfer-Encoding: chunked\r\n") + b"0x2\r\n{}\r\n0\r\n\r\n",
     "illegal chunk header"),
    (capture(b"{}", framing=b"Transfer-Encoding: chunked\r\n") + b"2_0\r\n{}\r\n0\r\n\r\n",
     "illegal chunk header"),
    (capture(b"{}", framing=b"Transfer-Encoding: notchunked\r\n") + b"{}",
     "Only Transfer-Encoding: chunked"),
    (capture(b"{}", extra=b"X-CloudChat-Signature: " + sign(SECRET, b"{}").encode() + b"\r\n")
     + b"{}", "2 X-CloudChat-Signature headers"),
])
def test_captures_with_framing_errors_are_bad_input(tmp_path, wenv, raw, message):
    path = tmp_path / "captured.http"
    path.write_bytes(raw)
    proc = run_cli("webhook", "verify", "--request", str(path), env=wenv)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_chunked_capture_with_bare_lf_headers_verifies(tmp_path, wenv):
    body = event_body("evt_chunked")
    head = capture(body, framing=b"Transfer-Encoding: chunked\r\n").replace(b"\r\n", b"\n")
    path = tmp_path / "captured.http"
    path.write_bytes(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    proc = run_cli("webhook", "verify", "--request", str(path), "--json", env=wenv)
    assert proc.returncode == 0 and json.loads(proc.stdout)["event"]["id"] == "evt_chunked"
