"""The installed CLI against a hostile API (tests/hostile.py): what reached the server is the
ground truth. Success is a 2xx carrying a message; anything else must never read as "sent"."""

from __future__ import annotations

import csv
import json

import pytest

from .conftest import run_cli
from .hostile import HostileServer

TO = "6281234567890"


@pytest.fixture
def hostile():
    servers: list[HostileServer] = []

    def start(mode="ok", **kw) -> HostileServer:
        servers.append(HostileServer(mode, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def send(env, api, *args, **extra):
    return run_cli("send", TO, "Halo", *args, env={**env, **api.env(**extra)})


def single_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("Error:"), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return lines[0]


# --- item 1: a 3xx is an error, never followed ---------------------------------------------


def test_send_redirect_is_an_error_naming_location_and_is_not_followed(env, hostile):
    elsewhere = hostile("ok")
    api = hostile("redirect", location=elsewhere.base_url + "/messages")
    proc = send(env, api)
    assert proc.returncode == 1, proc.stderr
    line = single_error_line(proc)
    assert "HTTP 301" in line and elsewhere.base_url + "/messages" in line
    assert "base_url" in proc.stderr and proc.stdout == ""
    assert api.per_recipient() == {TO: 1}
    assert elsewhere.requests == []  # the key never travelled to the Location


def test_api_redirect_is_an_error_too(env, hostile):
    api = hostile("redirect")
    proc = run_cli("api", "GET", "messages/msg_1", env={**env, **api.env()})
    assert proc.returncode == 1
    assert "redirect to https://127.0.0.1" in single_error_line(proc)
    assert len(api.requests) == 1


# --- item 1: a 2xx without a message is "outcome unknown" ------------------------------------


@pytest.mark.parametrize(("mode", "what"), [
    ("html-200", "text/html body that is not JSON"),
    ("truncated-200", "body that is not JSON"),
    ("204", "empty body"),
    ("array-200", "a JSON array"),
])
def test_send_2xx_without_a_message_is_outcome_unknown(env, hostile, mode, what):
    api = hostile(mode)
    proc = send(env, api)
    assert proc.returncode == 7, proc.stderr
    line = single_error_line(proc)
    assert "outcome unknown" in line and what in line
    assert "Sent" not in proc.stdout
    assert api.per_recipient() == {TO: 1}


def test_send_json_of_a_2xx_without_id_is_not_printed_as_success(env, hostile):
    api = hostile("array-200")
    proc = send(env, api, "--json")
    assert proc.returncode == 7 and proc.stdout == ""


def test_api_prints_whatever_a_2xx_returns(env, hostile):
    api = hostile("html-200")
    proc = run_cli("api", "GET", "status", env={**env, **api.env()})
    assert proc.returncode == 0, proc.stderr
    assert "Sign in to the Wi-Fi" in proc.stdout


# --- item 1: in a broadcast, both stop the run ---------------------------------------------


def make_csv(tmp_path, n=4):
    path = tmp_path / "list.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["to", "name"])
        for i in range(n):
            writer.writerow([f"62813000{i:04d}", f"P{i}"])
    return path


def report(path):
    with path.open(newline="") as fh:
        return {r["to"]: r for r in csv.DictReader(fh)}


def broadcast(env, api, csv_path, tmp_path, *args):
    return run_cli("broadcast", str(csv_path), "-t", "Halo {name}", "-y", "--concurrency", "1",
                   "--journal", str(tmp_path / "j.db"), "--report", str(tmp_path / "r.csv"),
                   *args, env={**env, **api.env(**FAST_PACE)})


# A broadcast paces itself at the App's limit (60/min: one a second); these tests are about
# what the server answers, so the limit is one the run never has to wait for.
FAST_PACE = {"CLOUDCHAT_RATE_LIMIT": "1000", "CLOUDCHAT_RATE_WINDOW": "1"}


def test_broadcast_redirect_stops_the_run_row_failed_rest_pending(env, hostile, tmp_path):
    api = hostile("redirect")
    path = make_csv(tmp_path)
    proc = broadcast(env, api, path, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "redirect to https://127.0.0.1" in proc.stderr and "base_url" in proc.stderr
    assert "--retry-failed" in proc.stderr
    assert api.per_recipient() == {"628130000000": 1}  # one request, then the run stopped
    rows = report(tmp_path / "r.csv")
    assert [r["status"] for r in rows.values()] == ["failed", "pending", "pending", "pending"]
    assert "redirect" in rows["628130000000"]["error"]
    # base_url fixed: the failed row is resent on request, the pending ones once each
    api.mode = "ok"
    again = broadcast(env, api, path, tmp_path, "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert api.per_recipient() == {"628130000000": 2, "628130000001": 1, "628130000002": 1,
                                   "628130000003": 1}


@pytest.mark.parametrize("mode", ["html-200", "204"])
def test_broadcast_2xx_without_message_stops_the_run_row_unknown(env, hostile, tmp_path, mode):
    api = hostile(mode)
    path = make_csv(tmp_path)
    proc = broadcast(env, api, path, tmp_path)
    assert proc.returncode == 7, proc.stderr
    assert "outcome unknown" in proc.stderr and "--retry-unknown" in proc.stderr
    assert api.per_recipient() == {"628130000000": 1}
    rows = report(tmp_path / "r.csv")
    assert [r["status"] for r in rows.values()] == ["unknown", "pending", "pending", "pending"]
    api.mode = "ok"
    again = broadcast(env, api, path, tmp_path)  # without --retry-unknown: never resent
    assert again.returncode == 8
    assert api.per_recipient() == {"628130000000": 1, "628130000001": 1, "628130000002": 1,
                                   "628130000003": 1}


# --- item 5: every deadline is total ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["slow-status", "slow-headers", "slow-body"])
def test_a_drip_is_bounded_by_timeout_outcome_unknown(env, hostile, mode):
    api = hostile(mode)
    proc = send(env, api, CLOUDCHAT_TIMEOUT="1")
    assert proc.returncode == 7, proc.stderr
    assert "outcome unknown" in single_error_line(proc)
    assert api.per_recipient() == {TO: 1}


def test_reset_mid_body_is_outcome_unknown(env, hostile):
    api = hostile("reset-mid-body")
    proc = send(env, api)
    assert proc.returncode == 7 and "outcome unknown" in proc.stderr
    assert api.per_recipient() == {TO: 1}


@pytest.mark.parametrize("mode", ["slow-headers", "slow-body"])
def test_a_drip_through_a_proxy_is_bounded_too(env, hostile, mode):
    proxy = hostile(mode)  # httpx's own transport carries proxied requests
    proc = run_cli("send", TO, "Halo", env={
        **env, **proxy.env(CLOUDCHAT_TIMEOUT="1"), "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}",
        "CLOUDCHAT_BASE_URL": "http://api.cloudchat.invalid/api/public/v1"})
    assert proc.returncode == 7, proc.stderr
    assert "outcome unknown" in single_error_line(proc)
    assert proxy.per_recipient() == {TO: 1}
    assert proxy.requests[0].target == "http://api.cloudchat.invalid/api/public/v1/messages"


def test_broadcast_drip_is_unknown_and_the_run_goes_on(env, hostile, tmp_path):
    api = hostile(["slow-body", "ok"])
    path = make_csv(tmp_path, 3)
    proc = run_cli("broadcast", str(path), "-t", "Halo {name}", "-y", "--concurrency", "1",
                   "--report", str(tmp_path / "r.csv"),
                   env={**env, **api.env(CLOUDCHAT_TIMEOUT="1", **FAST_PACE)})
    assert proc.returncode == 8, proc.stderr
    assert [r["status"] for r in report(tmp_path / "r.csv").values()] == [
        "unknown", "sent", "sent"]
    assert api.per_recipient() == {"628130000000": 1, "628130000001": 1, "628130000002": 1}


def trigger(env, url, *args):
    return run_cli("webhook", "trigger", url, *args,
                   env={**env, "CLOUDCHAT_WEBHOOK_SECRET": "whsec_test_hostile_0123456789"})


def test_trigger_gives_up_an_attempt_that_drips(env, hostile):
    receiver = hostile("slow-headers")
    proc = trigger(env, receiver.base_url, "--no-retry")
    assert proc.returncode == 7, proc.stderr
    assert "no answer within 5 s" in proc.stderr
    assert len(receiver.requests) == 1


def test_trigger_rejects_a_file_url(env):
    proc = trigger(env, "file:///etc/passwd")
    assert proc.returncode == 2
    assert "not an http:// or https:// URL" in single_error_line(proc)


# --- item 9: the server is not trusted for display ---------------------------------------


def test_fields_echoed_from_the_server_are_sanitised(env, hostile):
    api = hostile("escapes")
    proc = send(env, api)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\x9b" not in proc.stdout
    assert "{'" not in proc.stdout and "['" not in proc.stdout  # no Python reprs
    assert '{"state": "queued"}' in proc.stdout and "msg_" in proc.stdout
    raw = send(env, api, "--json")
    assert raw.returncode == 0 and "\x1b" not in raw.stdout and "\x9b" not in raw.stdout
    assert json.loads(raw.stdout)["to"] == "\x1b]0;owned\x07\x9b2J"  # the data itself is intact


# --- item 10: Retry-After is obeyed ----------------------------------------------------------


def test_a_retry_after_beyond_max_retry_wait_stops_at_once(env, hostile):
    api = hostile("retry-after", retry_after="86400")
    proc = send(env, api, CLOUDCHAT_MAX_RETRIES="4")
    assert proc.returncode == 5, proc.stderr
    assert "asks to wait 86400 s" in proc.stderr and "retry after 20" in proc.stderr
    assert api.per_recipient() == {TO: 1}  # never retried earlier than asked


def test_a_retry_after_within_budget_is_waited_for(env, hostile):
    api = hostile(["429", "ok"])  # Retry-After: 1
    proc = send(env, api, CLOUDCHAT_MAX_RETRIES="4")
    assert proc.returncode == 0, proc.stderr
    assert api.per_recipient() == {TO: 2}
