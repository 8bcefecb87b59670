"""Retry/backoff decisions with an injected clock and random source."""

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from cloudchat_cli.core.backoff import RetryPolicy, retry_delay, server_wait

NOW = 1_800_000_000.0


def test_full_jitter_grows_and_is_capped():
    policy = RetryPolicy(base=2.0, cap=60.0)
    assert policy.backoff(0, lambda: 0.999) == pytest.approx(1.998)
    assert policy.backoff(3, lambda: 0.5) == pytest.approx(8.0)
    assert policy.backoff(10, lambda: 1.0) == 60.0
    assert policy.backoff(2, lambda: 0.0) == 0.0


def test_retry_after_seconds_and_date():
    assert server_wait({"Retry-After": "7"}, NOW) == 7
    date = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    assert server_wait({"retry-after": date}, NOW) == pytest.approx(30)
    past = format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)
    assert server_wait({"Retry-After": past}, NOW) == 0


def test_reset_header_seconds_or_epoch():
    assert server_wait({"X-RateLimit-Reset": "12"}, NOW) == 12
    assert server_wait({"X-RateLimit-Reset": str(int(NOW + 45))}, NOW) == pytest.approx(45)
    assert server_wait({"Retry-After": "3", "X-RateLimit-Reset": "50"}, NOW) == 3


@pytest.mark.parametrize("junk", ["soon", "-5", "nan", "inf", "", "Mon, 99 Foo"])
def test_garbage_headers_ignored(junk):
    assert server_wait({"Retry-After": junk}, NOW) is None


def test_429_uses_server_wait_then_jitter():
    policy = RetryPolicy(max_total_wait=100)
    assert retry_delay(policy, 0, 429, {"Retry-After": "9"}, NOW, lambda: 0.5) == 9
    assert retry_delay(policy, 0, 429, {"Retry-After": "9999"}, NOW, lambda: 0.5) == 9999
    assert retry_delay(policy, 1, 429, {}, NOW, lambda: 0.5) == pytest.approx(2.0)
    # a 5xx ignores Retry-After-less headers and backs off with jitter
    assert retry_delay(policy, 2, 503, {}, NOW, lambda: 0.25) == pytest.approx(2.0)
