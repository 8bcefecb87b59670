"""The HTTP core against httpx.MockTransport: auth, retries, errors, timeouts, redaction."""

import json

import httpx
import pytest

from cloudchat_cli.core.backoff import RetryPolicy
from cloudchat_cli.core.errors import ApiError, ExitCode, NetworkError
from cloudchat_cli.core.http import ApiClient
from cloudchat_cli.core.throttle import Throttle

from .fakes import FakeClock

KEY = "sk_live_secretsecretsecret9876"
OK = {"id": "msg_1", "status": "queued"}


def client_for(handler, clock=None, retry=None, **kw):
    clock = clock or FakeClock()
    return ApiClient(
        "https://api.example/api/public/v1",
        KEY,
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        rng=lambda: 0.5,
        retry=retry or RetryPolicy(max_retries=3),
        **kw,
    ), clock


def responses(*items):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = items[min(len(seen), len(items)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def test_auth_user_agent_and_url():
    handler, seen = responses(httpx.Response(201, json=OK))
    client, _ = client_for(handler)
    response = client.request("POST", "messages", json_body={"a": 1})
    assert response.status == 201 and response.json() == OK
    request = seen[0]
    assert str(request.url) == "https://api.example/api/public/v1/messages"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["User-Agent"].startswith("cloudchat-cli/")
    assert json.loads(request.content) == {"a": 1}


def test_429_honours_retry_after_then_succeeds():
    handler, seen = responses(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow"}}),
        httpx.Response(201, json=OK),
    )
    client, clock = client_for(handler)
    assert client.request("POST", "messages", json_body={}).attempts == 2
    assert clock.sleeps == [7.0]
    assert len(seen) == 2


def test_429_blocks_the_throttle_for_everyone():
    handler, _ = responses(
        httpx.Response(429, headers={"X-RateLimit-Reset": "5"}), httpx.Response(201, json=OK)
    )
    clock = FakeClock()
    throttle = Throttle(100, 60, clock=clock, sleep=clock.sleep)
    client, _ = client_for(handler, clock=clock, throttle=throttle)
    client.request("POST", "messages", json_body={})
    assert sum(clock.sleeps) == pytest.approx(5.0)


def test_5xx_full_jitter_then_success():
    handler, seen = responses(httpx.Response(500), httpx.Response(503), httpx.Response(200,
                                                                                      json=OK))
    client, clock = client_for(handler)
    client.request("POST", "messages", json_body={})
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(2.0)]  # 0.5 * 2, 0.5 * 4


def test_retry_budget_exhausted_gives_exit_6_and_5():
    client, clock = client_for(responses(httpx.Response(502, text="bad gateway"))[0])
    with pytest.raises(ApiError) as info:
        client.request("POST", "messages", json_body={})
    assert info.value.exit_code == ExitCode.SERVER and len(clock.sleeps) == 3
    client, _ = client_for(responses(httpx.Response(429, headers={"Retry-After": "1"}))[0])
    with pytest.raises(ApiError) as info:
        client.request("POST", "messages", json_body={})
    assert info.value.exit_code == ExitCode.RATE_LIMITED


def test_total_wait_cap_stops_early():
    handler, seen = responses(httpx.Response(429, headers={"Retry-After": "50"}))
    client, clock = client_for(handler, retry=RetryPolicy(max_retries=10, max_total_wait=120))
    with pytest.raises(ApiError) as info:
        client.request("POST", "messages", json_body={})
    assert clock.sleeps == [50.0, 50.0] and len(seen) == 3
    assert "max_retry_wait" in info.value.hint


@pytest.mark.parametrize(("status", "code"), [(400, 2), (401, 3), (403, 3), (404, 4), (409, 1)])
def test_non_retryable_statuses_map_to_exit_codes(status, code):
    handler, seen = responses(httpx.Response(status, json={"message": "nope"}))
    client, _ = client_for(handler)
    with pytest.raises(ApiError) as info:
        client.request("POST", "messages", json_body={})
    assert info.value.exit_code == code and len(seen) == 1
    assert "nope" in info.value.message


def test_read_timeout_is_not_retried_and_outcome_unknown():
    handler, seen = responses(httpx.ReadTimeout("slow"), httpx.Response(201, json=OK))
    client, _ = client_for(handler)
    with pytest.raises(NetworkError) as info:
        client.request("POST", "messages", json_body={})
    assert info.value.outcome_unknown and len(seen) == 1
    assert "may have been sent" in info.value.message
    assert info.value.exit_code == ExitCode.NETWORK


def test_timed_out_request_keeps_its_slot_a_full_window():
    clock = FakeClock()
    throttle = Throttle(1, 60, clock=clock, sleep=clock.sleep, margin=0)
    handler, _ = responses(httpx.ReadTimeout("slow"))
    client, _ = client_for(handler, clock=clock, throttle=throttle)
    with pytest.raises(NetworkError):
        client.request("POST", "messages", json_body={})
    state = throttle.state()
    assert state.used == 1 and state.next_free_at == pytest.approx(clock.now + 60)


def test_connect_error_names_the_url():
    handler, _ = responses(httpx.ConnectError("Connection refused"))
    client, _ = client_for(handler)
    with pytest.raises(NetworkError) as info:
        client.request("POST", "messages", json_body={})
    assert "https://api.example/api/public/v1/messages" in info.value.message
    assert not info.value.outcome_unknown


def test_debug_log_redacts_authorization():
    lines = []
    handler, _ = responses(httpx.Response(201, json=OK))
    client, _ = client_for(handler, debug=lines.append)
    client.request("POST", "messages", json_body={"to": "1"})
    text = "\n".join(lines)
    assert "authorization: [redacted]" in text.lower()
    assert KEY not in text and "secretsecret" not in text
    assert "→ POST" in text and "← 201" in text


def test_huge_body_is_capped():
    handler, _ = responses(httpx.Response(200, content=b"x" * (3 * 1024 * 1024)))
    client, _ = client_for(handler)
    response = client.request("GET", "big")
    assert response.truncated and len(response.body) == 1024 * 1024
