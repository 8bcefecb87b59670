"""The transports under the API client, against real sockets on 127.0.0.1.

Two transports carry production requests: ``wire`` (http.client, core/wire.py; the default) and
httpx's own (behind a proxy, or with ``CLOUDCHAT_TRANSPORT=httpx``). The tests that take the
``transport`` fixture are the contract both keep — exact requests, bodies, which errors mean
"nothing was sent" and which "outcome unknown" — and run once per transport, each built the way
``core.http.choose_transport`` builds it for the API client. The rest test wire's own pool.
"""

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable

import httpx
import pytest

from cloudchat_cli.core.deadline import NO_KEEPALIVE
from cloudchat_cli.core.wire import StdlibTransport

from .conftest import TEST_KEY, contract_client, run_cli

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


def read_request(conn: socket.socket, buf: bytearray) -> bytes | None:
    """One request (headers and Content-Length body) from ``conn``; None at EOF."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += conn.recv(65536)
    buf[:] = rest[length:]
    return head + b"\r\n\r\n" + rest[:length]


class Scripted:
    """A TCP server running ``handler(conn, server)`` for each connection it accepts."""

    def __init__(self, handler: Callable[[socket.socket, "Scripted"], None],
                 wrap: ssl.SSLContext | None = None):
        self.handler = handler
        self.wrap = wrap
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.wrap is not None:
                conn = self.wrap.wrap_socket(conn, server_side=True)
            self.handler(conn, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
            self.closed.set()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/api/public/v1/messages?x=1"

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture
def server():
    made: list[Scripted] = []

    def make(handler, wrap=None) -> Scripted:
        made.append(Scripted(handler, wrap))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def keep_alive(conn, srv):
    buf = bytearray()
    while (request := read_request(conn, buf)) is not None:
        srv.requests.append(request)
        conn.sendall(OK)


def client(**kw) -> httpx.Client:
    return httpx.Client(transport=StdlibTransport(**kw), timeout=5)


def test_keep_alive_reuses_one_connection_and_sends_exact_request(server, transport):
    srv = server(keep_alive)
    with contract_client(transport) as http:
        for i in range(3):
            r = http.post(srv.url(), json={"n": i}, headers={"Authorization": "Bearer k"})
            assert (r.status_code, r.json()) == (200, {"ok": True})
    # httpx's own keeps no connection alive (core/deadline.py: a reused one cannot be watched)
    assert srv.connections == (1 if transport == "wire" else 3)
    first = srv.requests[0]
    assert first.startswith(b"POST /api/public/v1/messages?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first and b"\r\nAuthorization: Bearer k\r\n" in first
    assert first.endswith(b'\r\n\r\n{"n":0}')
    assert first.lower().count(b"\r\nhost:") == 1  # httpx's header, not a second one


def test_connection_closed_by_the_server_while_idle_is_not_reused(server, transport):
    def one_request_then_close(conn, srv):
        read_request(conn, bytearray())
        conn.sendall(OK)  # says keep-alive (HTTP/1.1), then closes anyway: an idle timeout

    srv = server(one_request_then_close)
    with contract_client(transport) as http:
        assert http.get(srv.url()).status_code == 200
        assert srv.closed.wait(5)
        # Reusing the dead socket would fail *after* sending: "outcome unknown" for a new request.
        assert http.get(srv.url()).status_code == 200
    assert srv.connections == 2


def test_chunked_body_duplicate_and_latin1_headers(server, transport):
    def chunked(conn, srv):
        read_request(conn, bytearray())
        conn.sendall(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n"
                     b"X-Name: Jos\xe9\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")

    srv = server(chunked)
    with contract_client(transport) as http:
        r = http.get(srv.url())
    assert (r.status_code, r.content) == (201, b"abcde")
    assert r.headers.get_list("x-a") == ["1", "2"]
    assert r.headers.raw[-1] == (b"X-Name", b"Jos\xe9")


def test_nothing_sent_errors(server, transport):
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens here now
    with contract_client(transport) as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{port}/")
    with contract_client(transport) as http, pytest.raises(httpx.UnsupportedProtocol):
        http.get("ftp://127.0.0.1/")


@pytest.mark.parametrize(("reply", "error"), [
    (b"", httpx.RemoteProtocolError),  # closed without answering
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", httpx.RemoteProtocolError),
    (b"NOT HTTP AT ALL\r\n\r\n", httpx.RemoteProtocolError),
    (None, httpx.ReadTimeout),  # headers never come
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123", httpx.ReadTimeout),  # body stalls
])
def test_request_sent_then_failure_is_a_read_side_error(server, transport, reply, error):
    release = threading.Event()

    def answer(conn, srv):
        read_request(conn, bytearray())
        if reply is None or reply.endswith(b"0123"):
            conn.sendall(reply or b"")
            release.wait(10)  # stall until the client gave up
        else:
            conn.sendall(reply)

    srv = server(answer)
    try:
        with contract_client(transport, timeout=0.3) as http, pytest.raises(error):
            http.post(srv.url(), content=b"{}")
    finally:
        release.set()


def test_a_header_that_would_split_the_request_is_refused_before_sending(server, transport):
    srv = server(keep_alive)
    request = httpx.Request("GET", srv.url(), headers={"X-Ok": "1"})
    request.headers._list.append((b"x-evil", b"x-evil", b"a\r\nInjected: 1"))  # past httpx
    with contract_client(transport) as http, pytest.raises(httpx.LocalProtocolError):
        http.send(request)
    assert srv.requests == []


def test_early_stop_discards_the_connection_instead_of_reusing_it(server):
    def big(conn, srv):
        buf = bytearray()
        while read_request(conn, buf) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300000)

    srv = server(big)
    with client() as http:
        for _ in range(2):
            with http.stream("GET", srv.url()) as r:
                next(r.iter_raw())  # read a part, then stop: the rest is still on the socket
    assert srv.connections == 2


def test_threads_share_one_transport(server, transport):
    srv = server(keep_alive)
    failures: list[BaseException] = []
    with contract_client(transport) as http:

        def worker():
            try:
                for _ in range(20):
                    assert http.get(srv.url()).json() == {"ok": True}
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
        assert len(srv.requests) == 160
        if transport == "wire":  # (httpx's own: one connection per request, see above)
            assert srv.connections <= 8  # at most one per thread, each reused


def test_idle_connections_are_capped(server):
    srv = server(keep_alive)
    transport = StdlibTransport(max_idle=1)
    with httpx.Client(transport=transport, timeout=5) as http:
        with http.stream("GET", srv.url()) as a, http.stream("GET", srv.url()) as b:
            a.read()
            b.read()
        assert srv.connections == 2
        assert [len(v) for v in transport._idle.values()] == [1]
        http.get(srv.url())
        assert srv.connections == 2  # the kept one was reused


@pytest.fixture
def tls_files(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return key, cert


@pytest.mark.e2e
def test_https_verifies_the_certificate(server, tls_files, transport):
    key, cert = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv = server(keep_alive, wrap=server_ctx)
    with contract_client(transport) as http, pytest.raises(httpx.ConnectError) as info:
        http.get(srv.url("https"))  # the default trust store does not know this certificate
    assert "certificate" in str(info.value).lower()
    trusted = ssl.create_default_context(cafile=str(cert))
    if transport == "wire":
        http = client(ssl_context=trusted)
    else:
        http = httpx.Client(verify=trusted, timeout=5, trust_env=False, limits=NO_KEEPALIVE)
    with http:
        assert http.get(srv.url("https")).json() == {"ok": True}
        assert http.get(srv.url("https")).json() == {"ok": True}
    # one refused handshake, then one reused TLS connection (httpx's own: one per request)
    assert srv.connections == (2 if transport == "wire" else 3)


@pytest.mark.parametrize("chosen", [None, "wire", "httpx"])
def test_send_honours_a_proxy_from_the_environment(server, env, chosen):
    def proxy(conn, srv):
        srv.requests.append(read_request(conn, bytearray()))
        body = b'{"id":"msg_via_proxy","status":"queued","channel":"whatsapp"}'
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    srv = server(proxy)
    env = {**env, "HTTP_PROXY": f"http://127.0.0.1:{srv.port}", "CLOUDCHAT_API_KEY": TEST_KEY,
           "CLOUDCHAT_BASE_URL": "http://api.cloudchat.invalid/api/public/v1",
           **({"CLOUDCHAT_TRANSPORT": chosen} if chosen else {})}
    proc = run_cli("send", "6281234567890", "Halo", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert srv.requests[0].startswith(
        b"POST http://api.cloudchat.invalid/api/public/v1/messages HTTP/1.1\r\n")


@pytest.mark.parametrize("with_deadline", [False, True])
def test_http10_answer_closed_by_the_server_is_read_whole(server, with_deadline, transport):
    """An HTTP/1.0 server (Python's http.server, many proxies) closes after its answer, so
    http.client closes the connection's socket as soon as the head is read; the body must still
    come through — also when each read is bounded by the total deadline."""
    import time

    from cloudchat_cli.core.wire import DEADLINE

    def http10(conn, srv):
        srv.requests.append(read_request(conn, bytearray()))
        body = b'{"id": "msg_1", "status": "queued"}' * 200  # more than one recv
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    srv = server(http10)
    ext = {DEADLINE: time.monotonic() + 30} if with_deadline else {}
    with contract_client(transport) as http:
        r = http.send(http.build_request("GET", srv.url(), extensions=ext))
        assert r.status_code == 200 and r.content.count(b"msg_1") == 200


def test_cloudchat_transport_selects_and_debug_names_it(env, sandbox):
    """CLOUDCHAT_TRANSPORT=httpx is the escape hatch should wire misbehave somewhere."""
    cenv = {**env, "CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    for chosen, said in [(None, "transport: wire (http.client)"), ("wire", "transport: wire"),
                         ("httpx", "transport: httpx's own (CLOUDCHAT_TRANSPORT=httpx)"),
                         (" HTTPX ", "transport: httpx's own")]:
        extra = {"CLOUDCHAT_TRANSPORT": chosen} if chosen else {}
        proc = run_cli("--debug", "send", "6281234567890", "Halo", env={**cenv, **extra})
        assert proc.returncode == 0 and said in proc.stderr, (chosen, proc.stderr)
    bad = run_cli("send", "6281234567890", "Halo", env={**cenv, "CLOUDCHAT_TRANSPORT": "curl"})
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("Error: CLOUDCHAT_TRANSPORT must be one of wire, httpx, got "
                                 "'curl'\n") and "Traceback" not in bad.stderr
    assert len(sandbox.records()) == 4
