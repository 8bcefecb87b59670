"""`webhook listen` speaks HTTP/1.1 to senders we did not write, and survives malformed ones.

Third-party senders (curl, Python requests, Node's http module) each do something our own
clients never do: chunked bodies, ``Expect: 100-continue``, HTTP/1.0, keep-alive. Raw sockets
cover pipelining, bare LF and each framing error: every request gets an answer.
"""

import json
import logging
import shutil
import socket
import subprocess

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudchat_cli.services.webhooks.signature import sign
from cloudchat_cli.services.webhooks.store import EventStore

from .test_e2e_webhook import SECRET, Listener, event_body

pytestmark = pytest.mark.e2e  # every test here starts a process


def address(lis) -> tuple[str, int]:
    host, port = lis.url.split("//")[1].split("/")[0].split(":")
    return host, int(port)


def signed_head(body: bytes, *, extra: str = "", length: bool = True, path: str = "/") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-CloudChat-Signature: {sign(SECRET, body)}\r\n{extra}")
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode()


def signed(body: bytes, **kw) -> bytes:
    return signed_head(body, **kw) + body


def responses(sock: socket.socket, count: int | None = None) -> list[tuple[int, dict, dict]]:
    """Read answers with h11 (not our parser) until ``count`` of them or the server closes."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x"),
                                                              ("Transfer-Encoding", "chunked")]))
    got: list[tuple[int, dict, dict]] = []
    current: tuple[int, dict] | None = None
    body = b""
    while count is None or len(got) < count:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            if not data and current is None:
                break  # closed between answers (after a keep-alive answer: nothing more)
            conn.receive_data(data)
        elif isinstance(event, h11.InformationalResponse):
            got.append((event.status_code, {}, {}))
        elif isinstance(event, h11.Response):
            current = (event.status_code, {k.decode(): v.decode() for k, v in event.headers})
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            got.append((*current, json.loads(body)))
            body, current = b"", None
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            # keep reading the next pipelined answer as if we had sent another request
            conn.send(h11.EndOfMessage())
            conn.start_next_cycle()
            conn.send(h11.Request(method="POST", target="/", headers=[
                ("Host", "x"), ("Transfer-Encoding", "chunked")]))
        elif isinstance(event, h11.ConnectionClosed):
            break
    return got


def exchange(lis, data: bytes, *, shut: bool = False,
             count: int | None = None) -> list[tuple[int, dict, dict]]:
    with socket.create_connection(address(lis), timeout=30) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return responses(sock, count)


# --- third-party senders -----------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-v", "-o", "/dev/stdout", "-w", "\n%{http_code}",
                           *args], capture_output=True, text=True, timeout=60)


needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")


@needs_curl
@pytest.mark.parametrize("how", ["chunked", "expect-100", "large body", "http1.0"])
def test_curl(tmp_path, start, how):
    lis = start("--save", str(tmp_path / "events"), "--path", "/webhook",
                "--max-body", str(4 * 1024 * 1024))
    body = event_body(f"evt_curl_{how}", text="x" * (2 * 1024 * 1024 if how == "large body"
                                                     else 10))
    (tmp_path / "body.json").write_bytes(body)
    data = ["--data-binary", f"@{tmp_path / 'body.json'}"]
    extra = {"chunked": ["-H", "Transfer-Encoding: chunked", *data],
             # -T streams the file, so curl waits for the 100 before sending it
             "expect-100": ["-X", "POST", "-T", str(tmp_path / "body.json"),
                            "-H", "Expect: 100-continue"],
             "large body": data,  # curl asks for 100-continue by itself above 1 MiB
             "http1.0": ["--http1.0", *data]}[how]
    proc = curl(lis.url, "-H", "Content-Type: application/json",
                "-H", f"X-CloudChat-Signature: {sign(SECRET, body)}", *extra)
    answer, status = proc.stdout.rsplit("\n", 1)
    assert (status, json.loads(answer)) == ("200", {"status": "ok"}), proc.stderr
    assert lis.event()["id"] == f"evt_curl_{how}"
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [body]
    if how == "chunked":
        assert "> Transfer-Encoding: chunked" in proc.stderr
    if how in ("expect-100", "large body"):
        assert "> Expect: 100-continue" in proc.stderr
        assert "< HTTP/1.1 100 Continue" in proc.stderr
    if how == "http1.0":
        assert "> POST /webhook HTTP/1.0" in proc.stderr
        assert "< Connection: close" in proc.stderr


@needs_curl
@pytest.mark.parametrize(("why", "status"), [("unsigned", 401), ("too big", 413)])
def test_curl_expect_100_refused_from_the_headers_alone(tmp_path, start, why, status):
    lis = start("--max-body", "1000", "--path", "/webhook")
    body = event_body(text="x" * (2000 if why == "too big" else 10))
    (tmp_path / "body.json").write_bytes(body)
    sig = [] if why == "unsigned" else ["-H", f"X-CloudChat-Signature: {sign(SECRET, body)}"]
    proc = curl(lis.url, "-X", "POST", "-T", str(tmp_path / "body.json"),
                "-H", "Expect: 100-continue", *sig)
    assert proc.stdout.rsplit("\n", 1)[1] == str(status), proc.stderr
    assert "100 Continue" not in proc.stderr  # refused instead, so the body was never sent
    assert "completely uploaded" not in proc.stderr
    assert f"{status} rejected" in lis.error_line("rejected")


try:
    import requests
except ImportError:  # pragma: no cover - it is in the [test] extras
    requests = None
needs_requests = pytest.mark.skipif(requests is None, reason="python requests is not "
                                    "installed (pip install -e '.[test]')")


@needs_requests
def test_requests_generator_body_is_chunked(tmp_path, start):
    lis = start("--save", str(tmp_path / "events"))
    body = event_body("evt_generator")

    def pieces():
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    response = requests.post(lis.url, data=pieces(), timeout=30, headers={
        "X-CloudChat-Signature": sign(SECRET, body), "Content-Type": "application/json"})
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [body]


@needs_requests
def test_requests_session_delivers_several_events_on_one_connection(tmp_path, start, caplog):
    lis = start("--save", str(tmp_path / "events"))
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    bodies = [event_body(f"evt_session_{i}") for i in range(5)]
    with requests.Session() as session:
        statuses = [session.post(lis.url, data=body, timeout=30, headers={
            "X-CloudChat-Signature": sign(SECRET, body)}).status_code for body in bodies]
    assert statuses == [200] * 5
    opened = [r.getMessage() for r in caplog.records
              if "Starting new" in r.getMessage() or "Resetting dropped" in r.getMessage()]
    assert len(opened) == 1, opened  # keep-alive: the listener did not close after each answer
    assert [lis.event()["id"] for _ in bodies] == [f"evt_session_{i}" for i in range(5)]
    assert len(EventStore(tmp_path / "events").load_all()) == 5


NODE_SENDER = r"""
const http = require('http');
const [url, sig, body] = [process.argv[1], process.argv[2], process.argv[3]];
const req = http.request(url, {method: 'POST', headers: {'Content-Type': 'application/json',
                                                        'X-CloudChat-Signature': sig}}, res => {
  let data = '';
  res.on('data', d => data += d);
  res.on('end', () => console.log(JSON.stringify({
    status: res.statusCode, body: data, chunked: req.getHeader('content-length') === undefined})));
});
req.on('error', e => { console.error(e.message); process.exit(3); });
// a stream without a length: Node sends it chunked
for (let i = 0; i < body.length; i += 10) req.write(body.slice(i, i + 10));
req.end();
"""


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_node_streams_without_a_length(tmp_path, start):
    lis = start("--save", str(tmp_path / "events"))
    body = event_body("evt_node")
    proc = subprocess.run(["node", "-e", NODE_SENDER, lis.url, sign(SECRET, body),
                           body.decode()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["status"], json.loads(result["body"]), result["chunked"]) == (
        200, {"status": "ok"}, True)
    assert [e.body for e in EventStore(tmp_path / "events").load_all()] == [body]


# --- raw sockets: keep-alive, pipelining, 100-continue, bare LF -------------------------------


def test_pipelined_requests_are_answered_in_order(start):
    lis = start()
    ids = ["evt_p1", "evt_p2", "evt_p1", "evt_p3"]  # the third is a retry of the first
    data = b"".join(signed(event_body(i)) for i in ids[:3])
    data += signed(b"not json", extra="Connection: close\r\n")
    got = exchange(lis, data)
    assert [(s, b) for s, _, b in got] == [
        (200, {"status": "ok"}), (200, {"status": "ok"}), (200, {"status": "duplicate"}),
        (400, {"error": "body is not a JSON object"})]
    assert got[-1][1]["connection"] == "close" and "connection" not in got[0][1]
    assert [lis.event()["id"] for _ in range(3)] == ["evt_p1", "evt_p2", "evt_p1"]


def test_an_upgrade_request_is_answered_and_the_connection_closed(start):
    lis = start()
    body = event_body("evt_upgrade")
    got = exchange(lis, signed(body, extra="Connection: Upgrade\r\nUpgrade: websocket\r\n")
                   + signed(event_body("evt_never_read")))
    assert [(s, h.get("connection"), b) for s, h, b in got] == [
        (200, "close", {"status": "ok"})]
    assert lis.event()["id"] == "evt_upgrade"


def test_keep_alive_connection_serves_one_request_after_another(start):
    lis = start()
    with socket.create_connection(address(lis), timeout=30) as sock:
        for i in range(3):
            sock.sendall(signed(event_body(f"evt_ka_{i}")))
            assert responses(sock, 1)[0][0] == 200


def test_expect_100_continue_is_answered_before_the_body_is_sent(start):
    lis = start()
    body = event_body("evt_expect")
    with socket.create_connection(address(lis), timeout=30) as sock:
        sock.sendall(signed_head(body, extra="Expect: 100-continue\r\n"))
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert responses(sock, 1)[0][:1] == (200,)


@pytest.mark.parametrize("chunked", [False, True])
def test_bare_lf_line_endings(start, chunked):
    # a stall would show as a 408 (or a timeout here) instead of the answer
    lis = start("--read-timeout", "600")
    body = event_body("evt_lf")
    head = signed_head(body, length=not chunked,
                       extra="Transfer-Encoding: chunked\r\n" if chunked else "")
    if chunked:
        data = head.replace(b"\r\n", b"\n") + b"%x\n%s\n0\n\n" % (len(body), body)
        assert exchange(lis, data)[0][:1] == (400,)
        assert "CRLF" in lis.error_line("400 rejected")
    else:
        assert exchange(lis, head.replace(b"\r\n", b"\n") + body, count=1)[0][:1] == (200,)


# --- framing errors: every one answered ---------------------------------------------------------

H = b"POST / HTTP/1.1\r\nHost: x\r\n"
SIG = f"X-CloudChat-Signature: {sign(SECRET, b'{}')}\r\n".encode()
CHUNKED = H + SIG + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("raw", "status", "reason"), [
    (H + SIG + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}", 400, "bad Content-Length"),
    (H + SIG + "Content-Length: ²\r\n\r\n{}".encode(), 400, "bad Content-Length"),
    (H + SIG + b"Content-Length: +2\r\n\r\n{}", 400, "bad Content-Length"),
    (H + SIG + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "conflicting"),
    (CHUNKED + b"0x2\r\n{}\r\n0\r\n\r\n", 400, "illegal chunk header"),
    (CHUNKED + b"2_0\r\n{}\r\n0\r\n\r\n", 400, "illegal chunk header"),
    (H + SIG + b"Transfer-Encoding: notchunked\r\n\r\n{}", 400, "Only Transfer-Encoding"),
    (H + SIG + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     400, "ambiguous"),
    (b"GARBAGE\r\n\r\n", 400, "illegal request line"),
    (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400, "Host"),
    (H + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431, "Receive buffer too long"),
    (H + SIG + b"Content-Length: 99999999999999999999\r\n\r\n", 413, "over --max-body"),
    (CHUNKED + (b"ff\r\n" + b"x" * 255 + b"\r\n") * 2, 413, "over --max-body"),
    (H + SIG + SIG + b"Content-Length: 2\r\n\r\n{}", 400, "2 X-CloudChat-Signature headers"),
    (H + SIG + b"Content-Length: 10\r\n\r\n{}", 400, "body"),  # then the client hangs up
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le", 400, "closed connection"),
])
def test_framing_errors_are_answered(start, raw, status, reason):
    lis = start("--max-body", "400")
    (got,) = exchange(lis, raw, shut=True)
    assert got[0] == status and got[1]["connection"] == "close"
    assert reason in got[2]["error"] and "bytearray" not in got[2]["error"]
    assert f"{status} rejected" in lis.error_line("rejected")
    assert lis.post(event_body("evt_after")).status_code == 200  # the listener is fine


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)])
def test_max_body_counts_the_decoded_chunked_body(start, extra, status):
    lis = start("--max-body", "1000")
    body = event_body("evt_limit", text="x" * (1000 + extra - len(event_body("evt_limit", ""))))
    assert len(body) == 1000 + extra
    pieces = [body[i:i + 64] for i in range(0, len(body), 64)]  # framing adds ~6 bytes each
    data = signed_head(body, extra="Transfer-Encoding: chunked\r\n", length=False) + b"".join(
        b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    (got,) = exchange(lis, data, shut=True)
    assert got[0] == status


def test_a_client_stalling_mid_request_gets_408(start):
    lis = start("--read-timeout", "0.2")
    with socket.create_connection(address(lis), timeout=30) as sock:
        sock.sendall(signed_head(b"{}" * 10))  # promises 20 bytes, sends none
        (got,) = responses(sock)
    assert got[0] == 408 and "stalled" in got[2]["error"]


def test_idle_keep_alive_connections_do_not_hold_up_a_stop(start):
    lis = start("--read-timeout", "600")  # were it waited for, stop() would time out
    with socket.create_connection(address(lis), timeout=30) as sock:
        sock.sendall(signed(event_body("evt_idle")))
        assert responses(sock, 1)[0][0] == 200
        assert lis.stop() == 0  # the idle connection is closed at once, not after 10 s
        assert sock.recv(1) == b""


def test_gets_and_wrong_paths_on_a_keep_alive_client(start):
    lis = start("--path", "/webhook")
    with httpx.Client(timeout=30) as client:
        assert client.get(lis.url).status_code == 405
        assert client.post(lis.url + "x", content=b"{}").status_code == 404
        body = event_body("evt_ok")
        assert client.post(lis.url, content=body, headers={
            "X-CloudChat-Signature": sign(SECRET, body)}).status_code == 200


# --- property: mangled requests are all answered -----------------------------------------------

VALID = signed(event_body("evt_fuzz"), extra="Transfer-Encoding: chunked\r\n", length=False)
VALID_CHUNKED = VALID + b"%x\r\n%s\r\n0\r\n\r\n" % (len(event_body("evt_fuzz")),
                                                    event_body("evt_fuzz"))
VALID_LENGTH = signed(event_body("evt_fuzz"))
ANSWERS = {100, 200, 400, 401, 404, 405, 413, 431}


@st.composite
def mangled(draw) -> bytes:
    data = bytearray(draw(st.sampled_from([VALID_CHUNKED, VALID_LENGTH])))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b":", b" ", b"0", b"f", b"x",
                                     b"\x00", b"\xff", b"-", b"+", b";", b"\r\n\r\n", b"",
                                     "²".encode()]))
        cut = draw(st.integers(0, 3))
        data[at:at + cut] = junk
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_listener(tmp_path_factory):
    from .conftest import base_env

    tmp = tmp_path_factory.mktemp("fuzz-listener")
    lis = Listener({**base_env(tmp), "CLOUDCHAT_WEBHOOK_SECRET": SECRET}, "--max-body", "4096")
    yield lis
    assert lis.stop() == 0
    assert "Traceback" not in "".join(lis.errors.queue)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=mangled())
def test_mangled_requests_are_always_answered(fuzz_listener, raw):
    got = exchange(fuzz_listener, raw, shut=True)
    assert got, f"no answer to {raw!r}"
    assert {status for status, _, _ in got} <= ANSWERS, got
    assert got[-1][0] in ANSWERS - {100}
