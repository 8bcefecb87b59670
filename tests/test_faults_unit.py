"""The core's answers to a misbehaving server, without a subprocess: total deadlines on both
transports (against real sockets), redirects, Retry-After, what counts as a sent message."""

from __future__ import annotations

import httpx
import pytest

from cloudchat_cli.core.backoff import RetryPolicy
from cloudchat_cli.core.deadline import exchange
from cloudchat_cli.core.errors import (
    ApiError,
    ExitCode,
    Interrupted,
    NetworkError,
    UnexpectedResponse,
)
from cloudchat_cli.core.http import ApiClient
from cloudchat_cli.core.wire import DEADLINE, StdlibTransport
from cloudchat_cli.services.messages import send_message

from .conftest import contract_client
from .hostile import HostileServer
from .test_http import client_for, responses


@pytest.fixture
def hostile():
    servers: list[HostileServer] = []

    def start(mode="ok", **kw) -> HostileServer:
        servers.append(HostileServer(mode, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# --- total deadlines ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["slow-status", "slow-headers", "slow-body"])
def test_a_drip_ends_at_the_deadline_on_either_transport(hostile, mode, transport):
    api = hostile(mode)
    with contract_client(transport, timeout=30) as http:
        request = http.build_request("POST", api.base_url + "/messages", json={"to": "1"})
        with pytest.raises(httpx.ReadTimeout):
            exchange(http, request, 0.5, 1024 * 1024)  # per-read timeouts alone: 30 s each
    assert len(api.requests) == 1


def test_the_deadline_extension_bounds_the_stdlib_transport_alone(hostile):
    import time

    api = hostile("slow-headers")
    with httpx.Client(transport=StdlibTransport(), timeout=30) as http:
        request = http.build_request("GET", api.base_url + "/x",
                                     extensions={DEADLINE: time.monotonic() + 0.3})
        with pytest.raises(httpx.ReadTimeout):
            http.send(request)


def test_keep_alive_still_reuses_one_connection_under_a_deadline(hostile):
    api = hostile("ok")
    with httpx.Client(transport=StdlibTransport(), timeout=5) as http:
        for _ in range(3):
            done = exchange(http, http.build_request("POST", api.base_url + "/messages",
                                                     json={"to": "1"}), 5, 1024)
            assert done.status == 201
    assert api.connections == 1 and len(api.requests) == 3


# --- the API client on each transport (CLOUDCHAT_TRANSPORT), against a real socket ------------


@pytest.mark.parametrize(("mode", "expect"), [
    ("ok", "sent"),
    ("redirect", "redirect"),  # refused, never followed
    ("500", "api-error"),
    ("slow-body", "unknown"),  # the total deadline, then "outcome unknown"
    ("reset-mid-body", "unknown"),
    ("html-200", "not-a-message"),
    ("truncated-200", "not-a-message"),
])
def test_the_api_client_gives_the_same_outcome_on_either_transport(hostile, monkeypatch,
                                                                   transport, mode, expect):
    monkeypatch.setenv("CLOUDCHAT_TRANSPORT", transport)
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    api = hostile(mode)
    lines: list[str] = []
    client = ApiClient(api.base_url, "sk_test_0123456789abcdef", timeout=0.5,
                       retry=RetryPolicy(max_retries=0), debug=lines.append)
    payload = {"channel": "whatsapp", "to": "6281234567890", "text": "x"}
    with client:
        try:
            result = send_message(client, payload)
            outcome = "sent" if result["response"]["id"] else "?"
        except UnexpectedResponse as exc:
            outcome = "not-a-message" if exc.outcome_unknown else "?"
        except ApiError as exc:
            outcome = "redirect" if exc.type == "redirect" else "api-error"
        except NetworkError as exc:
            outcome = "unknown" if exc.outcome_unknown else "not-sent"
    assert outcome == expect
    assert len(api.requests) == 1  # nothing retried, nothing followed
    assert lines[0].startswith("transport: " + ("wire" if transport == "wire" else "httpx"))


def test_nothing_listening_is_not_sent_on_either_transport(monkeypatch, transport):
    import socket

    monkeypatch.setenv("CLOUDCHAT_TRANSPORT", transport)
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with ApiClient(f"http://127.0.0.1:{port}/v1", "sk_test_0123456789abcdef",
                   timeout=2) as client, pytest.raises(NetworkError) as info:
        client.request("POST", "messages", json_body={})
    assert not info.value.outcome_unknown and "cannot connect" in info.value.message


def test_a_body_past_the_cap_is_marked_truncated_on_either_transport(monkeypatch, transport):
    """`cloudchat api` refuses a truncated body: a body of exactly the cap is not one."""
    from cloudchat_cli.core.http import MAX_BODY

    from .test_wire import Scripted, read_request

    monkeypatch.setenv("CLOUDCHAT_TRANSPORT", transport)
    for size, truncated in ((MAX_BODY + 1, True), (MAX_BODY, False)):
        def answer(conn, srv, size=size):
            read_request(conn, bytearray())
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
                         + b"x" * size)

        srv = Scripted(answer)
        try:
            with ApiClient(f"http://127.0.0.1:{srv.port}/v1", "sk_test_0123456789abcdef",
                           timeout=10) as client:
                response = client.request("GET", "big")
        finally:
            srv.stop()
        assert (response.truncated, len(response.body)) == (truncated, MAX_BODY), size


# --- 3xx, 2xx without a message, Retry-After -------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_naming_location_never_retried(status):
    handler, seen = responses(httpx.Response(status, headers={"Location": "https://x.example/v1"}))
    client, clock = client_for(handler)
    with pytest.raises(ApiError) as info:
        client.request("POST", "messages", json_body={})
    assert info.value.exit_code == ExitCode.FAILURE and info.value.status == status
    assert "https://x.example/v1" in info.value.message and "base_url" in info.value.hint
    assert len(seen) == 1 and clock.sleeps == []


def test_location_is_shown_on_one_line_without_control_characters():
    handler, _ = responses(httpx.Response(301, headers={"Location": "https://x\x1b[2J.example"}))
    client, _ = client_for(handler)
    with pytest.raises(ApiError) as info:
        client.request("GET", "messages")
    assert "\x1b" not in info.value.message


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>portal</html>", headers={"Content-Type": "text/html"}),
    httpx.Response(200, text='{"id": "msg_1", "sta'),
    httpx.Response(204),
    httpx.Response(200, json=[{"id": "msg_1"}]),
    httpx.Response(201, json={"status": "queued"}),
    httpx.Response(201, json={"id": ""}),
    httpx.Response(201, json={"id": None}),
    httpx.Response(201, json={"id": True}),
])
def test_a_2xx_without_a_message_object_is_outcome_unknown(response):
    handler, seen = responses(response)
    client, _ = client_for(handler)
    with pytest.raises(UnexpectedResponse) as info:
        send_message(client, {"channel": "whatsapp", "to": "6281234567890", "text": "x"})
    assert info.value.exit_code == ExitCode.NETWORK and info.value.outcome_unknown
    assert "outcome unknown" in info.value.message and len(seen) == 1


@pytest.mark.parametrize("ident", ["msg_1", 17])
def test_a_message_object_with_an_id_is_success(ident):
    handler, _ = responses(httpx.Response(201, json={"id": ident}))
    client, _ = client_for(handler)
    result = send_message(client, {"channel": "whatsapp", "to": "6281234567890", "text": "x"})
    assert result["response"]["id"] == ident


def test_retry_after_beyond_the_budget_stops_at_once_saying_when():
    handler, seen = responses(httpx.Response(429, headers={"Retry-After": "86400"}))
    client, clock = client_for(handler, retry=RetryPolicy(max_retries=4, max_total_wait=300))
    with pytest.raises(ApiError) as info:
        client.request("POST", "messages", json_body={})
    assert info.value.exit_code == ExitCode.RATE_LIMITED
    assert len(seen) == 1 and clock.sleeps == []  # never retried earlier than asked
    assert "asks to wait 86400 s" in info.value.hint and "retry after " in info.value.hint


def test_retry_after_within_the_budget_is_waited_in_full():
    handler, seen = responses(httpx.Response(429, headers={"Retry-After": "250"}),
                              httpx.Response(201, json={"id": "msg_1"}))
    client, clock = client_for(handler, retry=RetryPolicy(max_retries=4, max_total_wait=300))
    assert client.request("POST", "messages", json_body={}).status == 201
    assert clock.sleeps == [250.0] and len(seen) == 2


def test_a_timeout_is_still_a_network_error_outcome_unknown():
    handler, _ = responses(httpx.ReadTimeout("slow"))
    client, _ = client_for(handler)
    with pytest.raises(NetworkError) as info:
        client.request("POST", "messages", json_body={})
    assert info.value.outcome_unknown


def test_interrupted_is_not_an_exception():
    # `except Exception` around a wait (keyring, throttle) must never swallow Ctrl-C.
    assert not issubclass(Interrupted, Exception)
    assert Interrupted().exit_code == ExitCode.INTERRUPTED
