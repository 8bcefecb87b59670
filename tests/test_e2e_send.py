"""End to end: the installed `cloudchat send` against `cloudchat sandbox` over loopback."""

import json
import random
import signal
import subprocess

import pytest

from .conftest import TEST_KEY, cloudchat_exe


def test_text_success_summary(cli, api_env, sandbox):
    proc = cli("send", "+62 812-3456-7890", "Halo dari test", **api_env)
    assert proc.returncode == 0, proc.stderr
    assert "Sent msg_" in proc.stdout and "via whatsapp to 6281234567890" in proc.stdout
    (record,) = sandbox.records()
    assert record["status"] == 201
    assert record["request"] == {"channel": "whatsapp", "to": "6281234567890", "type": "text",
                                 "text": "Halo dari test"}


def test_json_prints_server_body_unchanged(cli, api_env, sandbox):
    proc = cli("send", "@alice_bot", "Hi", "-c", "tg", "--json", **api_env)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["id"] == sandbox.records()[0]["id"] and body["channel"] == "telegram"
    assert proc.stderr == ""


def test_media_message(cli, api_env, sandbox):
    proc = cli("send", "17841400000000000", "--channel", "ig", "--media-url",
               "https://cdn.example/promo.jpg", "--caption", "Promo", "--field", "ref=A-1",
               "--quiet", **api_env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert sandbox.records()[0]["request"] == {
        "channel": "instagram", "to": "17841400000000000", "type": "image",
        "media": {"url": "https://cdn.example/promo.jpg", "caption": "Promo"}, "ref": "A-1"}


def test_text_from_stdin_and_dash(cli, api_env, sandbox):
    assert cli("send", "6281234567890", input="Halo\nbaris dua\n", **api_env).returncode == 0
    assert cli("send", "6281234567890", "-", input="dari dash", **api_env).returncode == 0
    texts = [r["request"]["text"] for r in sandbox.records()]
    assert texts == ["Halo\nbaris dua", "dari dash"]


def test_invalid_recipient_exit_2_nothing_sent(cli, api_env, sandbox):
    proc = cli("send", "0812 3456 7890", "Halo", **api_env)
    assert proc.returncode == 2
    assert "local number" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("send", "6281234567890", "Halo", "--channel", "sms", **api_env)
    assert proc.returncode == 2 and "unknown channel 'sms'" in proc.stderr
    assert sandbox.records() == []


def test_local_number_with_country_code_from_env(cli, api_env, sandbox):
    proc = cli("send", "0812-3456-7890", "Halo", CLOUDCHAT_DEFAULT_COUNTRY_CODE="62", **api_env)
    assert proc.returncode == 0, proc.stderr
    assert sandbox.records()[0]["request"]["to"] == "6281234567890"


def test_server_400_exit_2(cli, api_env, sandbox):
    # Sandbox convention: a WhatsApp number ending in 0000 is "not on WhatsApp" (a server-side 400).
    proc = cli("send", "6281234560000", "Halo", **api_env)
    assert proc.returncode == 2
    assert "HTTP 400 invalid_recipient" in proc.stderr
    assert sandbox.statuses() == [400]


def test_401_bad_key_exit_3(cli, api_env, sandbox):
    proc = cli("send", "6281234567890", "Halo", **{**api_env, "CLOUDCHAT_API_KEY": "sk_live_wrong"})
    assert proc.returncode == 3
    assert "HTTP 401" in proc.stderr and "invalid API key" in proc.stderr
    assert sandbox.statuses() == [401]


def test_403_read_only_key_exit_3(cli, api_env, sandbox):
    key = "sk_test_ro_readonly000000000"
    proc = cli("send", "6281234567890", "Halo", **{**api_env, "CLOUDCHAT_API_KEY": key})
    assert proc.returncode == 3 and "HTTP 403" in proc.stderr


def test_404_exit_4(cli, api_env, sandbox):
    base = api_env["CLOUDCHAT_BASE_URL"].replace("/api/public/v1", "/api/public/v9")
    proc = cli("send", "6281234567890", "Halo", **{**api_env, "CLOUDCHAT_BASE_URL": base})
    assert proc.returncode == 4 and "HTTP 404" in proc.stderr


def test_no_key_exit_3_lists_sources(cli, env, sandbox):
    proc = cli("send", "6281234567890", "Halo", CLOUDCHAT_BASE_URL=sandbox.base_url)
    assert proc.returncode == 3
    for source in ("--api-key-file", "CLOUDCHAT_API_KEY", "OS keyring", "credentials file"):
        assert source in proc.stderr
    assert sandbox.records() == []


def test_key_file(cli, env, sandbox, tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text(TEST_KEY + "\n")
    keyfile.chmod(0o600)
    proc = cli("--api-key-file", str(keyfile), "send", "6281234567890", "Halo",
               CLOUDCHAT_BASE_URL=sandbox.base_url)
    assert proc.returncode == 0, proc.stderr
    keyfile.chmod(0o644)
    proc = cli("send", "6281234567890", "Halo", CLOUDCHAT_API_KEY_FILE=str(keyfile),
               CLOUDCHAT_BASE_URL=sandbox.base_url)
    assert proc.returncode == 0 and "readable by other users" in proc.stderr


def test_429_then_success(cli, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1", "--rate-window", "1")
    env = {**env, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
           "CLOUDCHAT_RATE_LIMIT": "100"}  # the client believes in a looser limit
    assert cli("send", "6281234567890", "one", **env).returncode == 0
    proc = cli("send", "6281234567890", "two", **env)
    assert proc.returncode == 0, proc.stderr
    assert box.statuses() == [201, 429, 201]
    assert "HTTP 429; retry 1/4" in proc.stderr


def _seed_failing_first(rate: float) -> int:
    """A --seed whose first draw injects a 500 and whose second does not."""
    for seed in range(1000):
        rng = random.Random(seed)
        if rng.random() < rate <= rng.random():
            return seed
    raise AssertionError("no seed found")


def test_500_then_success(cli, env, sandbox_factory):
    box = sandbox_factory("--fail-rate", "0.5", "--seed", str(_seed_failing_first(0.5)))
    proc = cli("send", "6281234567890", "Halo", CLOUDCHAT_BASE_URL=box.base_url,
               CLOUDCHAT_API_KEY=TEST_KEY)
    assert proc.returncode == 0, proc.stderr
    assert box.statuses() == [500, 201]


def test_500_until_budget_exit_6(cli, env, sandbox_factory):
    box = sandbox_factory("--fail-rate", "1")
    proc = cli("send", "6281234567890", "Halo", CLOUDCHAT_BASE_URL=box.base_url,
               CLOUDCHAT_API_KEY=TEST_KEY, CLOUDCHAT_MAX_RETRIES="1")
    assert proc.returncode == 6 and "HTTP 500" in proc.stderr
    assert box.statuses() == [500, 500]


def test_429_until_budget_exit_5(cli, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1", "--rate-window", "30")
    env = {**env, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
           "CLOUDCHAT_RATE_LIMIT": "100", "CLOUDCHAT_MAX_RETRY_WAIT": "5"}
    assert cli("send", "6281234567890", "one", **env).returncode == 0
    proc = cli("send", "6281234567890", "two", **env)
    assert proc.returncode == 5 and "HTTP 429" in proc.stderr and "max_retry_wait" in proc.stderr


def test_unreachable_host_exit_7(cli, env):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/public/v1"
    proc = cli("send", "6281234567890", "Halo", CLOUDCHAT_BASE_URL=url,
               CLOUDCHAT_API_KEY=TEST_KEY)
    assert proc.returncode == 7
    assert f"{url}/messages" in proc.stderr and "cannot connect" in proc.stderr


def test_server_slower_than_timeout_exit_7_outcome_unknown(cli, env, sandbox_factory):
    box = sandbox_factory("--latency", "3")
    proc = cli("send", "6281234567890", "Halo", CLOUDCHAT_BASE_URL=box.base_url,
               CLOUDCHAT_API_KEY=TEST_KEY, CLOUDCHAT_TIMEOUT="0.5")
    assert proc.returncode == 7
    assert "outcome unknown" in proc.stderr and "may have been sent" in proc.stderr
    assert box.statuses() == [201]  # it was in fact accepted: the warning was right


def test_debug_output_never_shows_the_key(cli, api_env, sandbox):
    proc = cli("--debug", "send", "6281234567890", "Halo", **api_env)
    assert proc.returncode == 0
    assert "→ POST" in proc.stderr and "[redacted]" in proc.stderr
    assert TEST_KEY not in proc.stdout + proc.stderr
    bad = cli("--debug", "send", "6281234567890", "Halo",
              **{**api_env, "CLOUDCHAT_API_KEY": TEST_KEY[:-1] + "Q"})
    assert bad.returncode == 0 or TEST_KEY[:-1] not in bad.stdout + bad.stderr


def test_embedded_sandbox_needs_no_account(cli, env):
    proc = cli("--sandbox", "send", "6281234567890", "Halo")
    assert proc.returncode == 0, proc.stderr
    assert "Sent msg_" in proc.stdout


@pytest.mark.e2e
def test_sigterm_during_send_exits_130(env, sandbox_factory):
    box = sandbox_factory("--latency", "30")
    proc = subprocess.Popen(
        [cloudchat_exe(), "send", "6281234567890", "Halo"],
        env={**env, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # The sandbox prints the message once accepted, before its latency: so we signal mid-request.
    assert "6281234567890" in box.readline()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


@pytest.mark.e2e
@pytest.mark.parametrize(("args", "code", "needle"), [
    ("<&-", 2, "Error: text is empty"),  # no text: the same usage error as an empty pipe
    ("Hi >&-", 0, ""),  # sent; the confirmation has nowhere to go
    ("Hi 2>&-", 0, ""),
])
def test_a_closed_standard_stream_is_not_an_internal_error(env, args, code, needle):
    proc = subprocess.run(["bash", "-c", f'"$0" --sandbox send 6281234567890 {args}',
                           cloudchat_exe()], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr
