"""The sandbox speaks HTTP/1.1 like a real API server: chunked bodies, keep-alive, pipelining,
100-continue, and a JSON answer for every framing problem (never a silent hang-up).

Third-party clients (curl, Python requests, Node) talk to it as they would to CloudChat; raw
sockets cover what no polite client sends. The record's ``conn`` field (one number per TCP
connection) is the ground truth for connection reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import httpx
import pytest

from .conftest import TEST_KEY

MSG = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "Halo"}
BODY = json.dumps(MSG).encode()
PATH = "/api/public/v1/messages"


def addr(box) -> tuple[str, int]:
    hostport = box.base_url.split("://", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def head(body_framing: str, *, path: str = PATH, method: str = "POST", extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer {TEST_KEY}\r\n"
            f"Content-Type: application/json\r\n{body_framing}{extra}\r\n").encode()


def post_bytes(body: bytes = BODY, extra: str = "") -> bytes:
    return head(f"Content-Length: {len(body)}\r\n", extra=extra) + body


def chunked(body: bytes, sizes=(7, 5)) -> bytes:
    out, rest = b"", body
    for size in sizes:
        part, rest = rest[:size], rest[size:]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    if rest:
        out += f"{len(rest):x}\r\n".encode() + rest + b"\r\n"
    return out + b"0\r\n\r\n"


class Conn:
    """A raw client socket that reads whole HTTP responses one at a time."""

    def __init__(self, box):
        self.sock = socket.create_connection(addr(box), timeout=20)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body (by Content-Length)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; got {self.buf!r}")
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if status < 200:
            length = 0
        while len(self.buf) < length:
            if not self._fill():
                raise EOFError("body cut short")
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (EOF after any buffered responses)."""
        try:
            return self.buf == b"" and not self._fill()
        except ConnectionResetError:
            return True


def json_error(status: int, headers: dict, body: bytes) -> dict:
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == status and error["message"]
    return error


def still_serves(box) -> None:
    r = httpx.post(box.base_url + "/messages", json=MSG,
                   headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=10)
    assert r.status_code == 201


# --- keep-alive, pipelining, chunked, 100-continue over raw sockets ---------------------------


def test_keep_alive_serves_several_requests_on_one_connection(sandbox):
    with Conn(sandbox) as conn:
        for _ in range(3):
            conn.send(post_bytes())
            status, headers, body = conn.response()
            assert status == 201 and json.loads(body)["id"].startswith("msg_")
            assert headers.get("connection", "").lower() != "close"
    records = sandbox.records()
    assert [r["status"] for r in records] == [201, 201, 201]
    assert len({r["conn"] for r in records}) == 1


def test_pipelined_requests_are_answered_in_order(sandbox):
    bodies = [json.dumps({**MSG, "text": f"pesan {i}"}).encode() for i in range(3)]
    with Conn(sandbox) as conn:
        conn.send(b"".join(post_bytes(b) for b in bodies))
        answers = [conn.response() for _ in bodies]
    assert [status for status, _, _ in answers] == [201, 201, 201]
    texts = [r["request"]["text"] for r in sandbox.records()]
    assert texts == ["pesan 0", "pesan 1", "pesan 2"]
    ids = [json.loads(body)["id"] for _, _, body in answers]
    listed = httpx.get(sandbox.base_url.split("/api/")[0] + "/_sandbox/messages").json()
    assert [m["id"] for m in listed["messages"]] == ids


def test_chunked_body_is_read_and_the_connection_stays_usable(sandbox):
    with Conn(sandbox) as conn:
        conn.send(head("Transfer-Encoding: chunked\r\n") + chunked(BODY))
        assert conn.response()[0] == 201
        conn.send(post_bytes())  # the chunk data was not mistaken for a next request
        assert conn.response()[0] == 201
    assert [r["request"] for r in sandbox.records()] == [MSG, MSG]


def test_chunked_with_extensions_and_trailers(sandbox):
    body = f"{len(BODY):x};name=value\r\n".encode() + BODY + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    with Conn(sandbox) as conn:
        conn.send(head("Transfer-Encoding: chunked\r\n") + body)
        assert conn.response()[0] == 201


def test_expect_100_continue_is_answered_before_the_body(sandbox):
    with Conn(sandbox) as conn:
        conn.send(head(f"Content-Length: {len(BODY)}\r\nExpect: 100-continue\r\n"))
        assert conn.response()[0] == 100  # nothing of the body has been sent yet
        conn.send(BODY)
        assert conn.response()[0] == 201
        conn.send(post_bytes())
        assert conn.response()[0] == 201


@pytest.mark.parametrize(("auth", "framing", "status"), [
    (f"Bearer {TEST_KEY}", "Content-Length: 5000000\r\n", 413),
    ("Bearer nope", "Content-Length: 50\r\n", 401),
    ("Bearer sk_test_ro_reader_0000", "Content-Length: 50\r\n", 403),
    (f"Bearer {TEST_KEY}", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
])
def test_expect_100_continue_refused_from_the_headers_alone(sandbox, auth, framing, status):
    request = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n{framing}"
               "Expect: 100-continue\r\n\r\n").encode()
    with Conn(sandbox) as conn:
        conn.send(request)
        got, headers, body = conn.response()  # the final answer instead of 100, no body sent
        assert got == status
        json_error(status, headers, body)
        assert headers["connection"] == "close" and conn.closed_by_server()
    still_serves(sandbox)


def test_unknown_expectation_is_417(sandbox):
    with Conn(sandbox) as conn:
        conn.send(post_bytes(extra="Expect: something-else\r\n"))
        status, headers, body = conn.response()
    assert status == 417 and json_error(status, headers, body)["type"] == "expectation_failed"


def test_http_1_0_request_gets_an_answer_and_a_close(sandbox):
    request = (f"POST {PATH} HTTP/1.0\r\nAuthorization: Bearer {TEST_KEY}\r\n"
               f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY
    with Conn(sandbox) as conn:
        conn.send(request)
        status, _, body = conn.response()
        assert status == 201 and json.loads(body)["id"]
        assert conn.closed_by_server()


def test_connection_close_is_honoured(sandbox):
    with Conn(sandbox) as conn:
        conn.send(post_bytes(extra="Connection: close\r\n") + post_bytes())
        status, headers, _ = conn.response()
        assert status == 201 and headers["connection"] == "close"
        assert conn.closed_by_server()
    assert len(sandbox.records()) == 1  # what followed the close was not served


# --- every framing problem gets a JSON answer, then the server keeps serving ----------------

BIG = 1024 * 1024 + 1
FRAMING = {
    "content-length 5000 digits": (head("Content-Length: " + "9" * 5000 + "\r\n"), 400),
    "content-length superscript two": (head("Content-Length: \u00b2\r\n"), 400),
    "content-length plus sign": (head("Content-Length: +5\r\n") + b"12345", 400),
    "content-length negative": (head("Content-Length: -1\r\n"), 400),
    "content-length not a number": (head("Content-Length: five\r\n"), 400),
    "content-length conflicting duplicates": (
        head("Content-Length: 5\r\nContent-Length: 6\r\n") + b"123456", 400),
    "content-length conflicting list": (head("Content-Length: 5, 6\r\n") + b"123456", 400),
    "content-length and chunked": (
        head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + chunked(BODY), 400),
    "content-length too large": (head(f"Content-Length: {BIG}\r\n"), 413),
    "chunked body too large": (
        head("Transfer-Encoding: chunked\r\n") + (b"10000\r\n" + b"x" * 0x10000 + b"\r\n") * 17,
        413),
    "transfer-encoding notchunked": (head("Transfer-Encoding: notchunked\r\n") + BODY, 501),
    "transfer-encoding gzip, chunked": (head("Transfer-Encoding: gzip, chunked\r\n"), 501),
    "chunk size 0x2f": (head("Transfer-Encoding: chunked\r\n") + b"0x2f\r\n" + b"x" * 47, 400),
    "chunk size 2_f": (head("Transfer-Encoding: chunked\r\n") + b"2_f\r\n" + b"x" * 47, 400),
    "chunk size not hex": (head("Transfer-Encoding: chunked\r\n") + b"zz\r\nxx\r\n", 400),
    "chunk size 40 digits": (head("Transfer-Encoding: chunked\r\n") + b"f" * 40 + b"\r\n", 400),
    "chunk data without CRLF": (
        head("Transfer-Encoding: chunked\r\n") + b"2\r\nxxyy\r\n0\r\n\r\n", 400),
    "bare LF line endings": (post_bytes().replace(b"\r\n", b"\n"), 400),
    "one bare LF in the head": (post_bytes().replace(b"\r\nContent-Type", b"\nContent-Type"), 400),
    "header 20 KB": (head("Content-Length: 0\r\n", extra=f"X-Big: {'a' * 20000}\r\n"), 431),
    "header line without a colon": (head("Content-Length: 0\r\n", extra="NoColon\r\n"), 400),
    "space before the colon": (head("Content-Length : 0\r\n"), 400),
    "garbage request line": (b"HELLO\r\n\r\n", 400),
    "unsupported version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
}


@pytest.mark.parametrize("case", list(FRAMING))
def test_framing_error_gets_a_json_answer(sandbox, case):
    request, status = FRAMING[case]
    with Conn(sandbox) as conn:
        conn.send(request)
        got, headers, body = conn.response()
        assert got == status
        json_error(status, headers, body)
        assert headers["connection"] == "close" and conn.closed_by_server()
    still_serves(sandbox)
    records = sandbox.records()
    assert records[0]["status"] == status and records[0]["error"]
    assert records[-1]["status"] == 201


def test_slow_client_sending_one_byte_at_a_time_is_served(sandbox):
    with Conn(sandbox) as conn:
        for i in range(0, len(data := head("Transfer-Encoding: chunked\r\n") + chunked(BODY))):
            conn.send(data[i:i + 1])
        assert conn.response()[0] == 201


def test_client_that_closes_mid_body_gets_a_400_and_a_record(sandbox):
    with Conn(sandbox) as conn:
        conn.send(head("Content-Length: 100\r\n") + b"{")
        conn.sock.shutdown(socket.SHUT_WR)  # half-closed: it can still read the answer
        status, headers, body = conn.response()
        assert "complete message body" in json_error(status, headers, body)["message"]
        assert status == 400 and conn.closed_by_server()
    assert sandbox.records()[0]["status"] == 400
    still_serves(sandbox)


# --- third-party clients -------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed")
    return subprocess.run([exe, "-sS", *args], capture_output=True, text=True, timeout=60)


AUTH_H = ["-H", f"Authorization: Bearer {TEST_KEY}", "-H", "Content-Type: application/json"]


@pytest.mark.e2e
def test_curl_chunked_upload(sandbox, tmp_path):
    (tmp_path / "body.json").write_bytes(BODY)
    proc = curl("-v", *AUTH_H, "-H", "Transfer-Encoding: chunked", "--data-binary",
                f"@{tmp_path / 'body.json'}", sandbox.base_url + "/messages")
    assert "Transfer-Encoding: chunked" in proc.stderr  # curl really streamed it
    assert json.loads(proc.stdout)["status"] == "queued"
    assert sandbox.records()[0]["request"] == MSG


@pytest.mark.e2e
def test_curl_expect_100_continue(sandbox, tmp_path):
    (tmp_path / "body.json").write_bytes(BODY)
    proc = curl("-v", *AUTH_H, "-H", "Expect: 100-continue", "--data-binary",
                f"@{tmp_path / 'body.json'}", sandbox.base_url + "/messages")
    assert "HTTP/1.1 100 Continue" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "queued"


@pytest.mark.e2e
def test_curl_expect_refused_with_a_bad_key(sandbox, tmp_path):
    (tmp_path / "body.json").write_bytes(BODY * 2000)  # ~150 KB that are never sent
    proc = curl("-v", "-H", "Authorization: Bearer nope", "-H", "Expect: 100-continue",
                "--data-binary", f"@{tmp_path / 'body.json'}", sandbox.base_url + "/messages")
    assert "100 Continue" not in proc.stderr
    assert json.loads(proc.stdout)["error"]["code"] == 401


@pytest.mark.e2e
def test_curl_http_1_0(sandbox):
    proc = curl("-v", "--http1.0", *AUTH_H, "--data-binary", BODY.decode(),
                sandbox.base_url + "/messages")
    assert "> POST /api/public/v1/messages HTTP/1.0" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "queued"


@pytest.mark.e2e
def test_curl_reuses_one_connection_for_several_requests(sandbox):
    url = sandbox.base_url + "/messages"
    proc = curl("-v", *AUTH_H, "--data-binary", BODY.decode(), url, url, url)
    assert proc.stdout.count('"status": "queued"') + proc.stdout.count('"status":"queued"') == 3
    assert "Re-using existing connection" in proc.stderr or "Reusing existing" in proc.stderr
    records = sandbox.records()
    assert [r["status"] for r in records] == [201] * 3 and len({r["conn"] for r in records}) == 1


def test_requests_generator_body_and_session_reuse(sandbox):
    requests = pytest.importorskip("requests", reason="python requests is not installed")

    def body():
        yield BODY[:10]
        yield BODY[10:]

    headers = {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}
    with requests.Session() as session:
        r = session.post(sandbox.base_url + "/messages", data=body(), headers=headers, timeout=10)
        assert r.status_code == 201 and r.request.headers["Transfer-Encoding"] == "chunked"
        for _ in range(3):
            assert session.post(sandbox.base_url + "/messages", json=MSG, headers=headers,
                                timeout=10).status_code == 201
    records = sandbox.records()
    assert [r["request"] for r in records] == [MSG] * 4
    assert len({r["conn"] for r in records}) == 1


NODE_SCRIPT = r"""
const http = require('http');
const [url, key, body] = process.argv.slice(2);
const agent = new http.Agent({keepAlive: true, maxSockets: 1});
function one(i) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {method: 'POST', agent,
      headers: {'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'}}, (res) => {
      let data = '';
      res.on('data', (c) => data += c);
      res.on('end', () => resolve(res.statusCode + ' ' + data));
    });
    req.on('error', reject);
    req.write(body.slice(0, 9));   // no Content-Length: Node streams it chunked
    setTimeout(() => { req.write(body.slice(9)); req.end(); }, 10);
  });
}
(async () => {
  for (let i = 0; i < 3; i++) console.log(await one(i));
  agent.destroy();
})().catch((e) => { console.log('ERROR ' + e.message); process.exit(1); });
"""


@pytest.mark.e2e
def test_node_streaming_request_without_a_length(sandbox, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "send.js"
    script.write_text(NODE_SCRIPT)
    proc = subprocess.run([node, str(script), sandbox.base_url + "/messages", TEST_KEY,
                           BODY.decode()], capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [line.split(" ", 1)[0] for line in lines] == ["201"] * 3
    records = sandbox.records()
    assert [r["request"] for r in records] == [MSG] * 3
    assert len({r["conn"] for r in records}) == 1


def test_a_failure_inside_the_sandbox_is_a_json_500_not_a_hang_up(sandbox_factory):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full to make the record write fail")
    box = sandbox_factory("--record", "/dev/full")  # every record write fails (ENOSPC)
    r = httpx.post(box.base_url + "/messages", json=MSG,
                   headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=10)
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert r.headers["connection"] == "close"
    box.stop()
    assert "No space left on device" in box.stderr()
