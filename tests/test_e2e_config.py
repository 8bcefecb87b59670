"""End to end: `cloudchat config` — profiles, settings with sources, keys, doctor."""

import json
import os
import stat

import pytest

from .conftest import TEST_KEY


def test_set_get_show_sources(cli, env, tmp_path):
    assert cli("-p", "shop", "config", "set", "rate_limit", "30").returncode == 0
    assert cli("-p", "shop", "config", "set", "default_channel", "tg").returncode == 0
    proc = cli("-p", "shop", "config", "get", "default_channel")
    assert (proc.returncode, proc.stdout) == (0, "telegram\n")
    proc = cli("-p", "shop", "config", "show", "--json", CLOUDCHAT_TIMEOUT="9",
               CLOUDCHAT_API_KEY=TEST_KEY)
    shown = json.loads(proc.stdout)
    assert shown["rate_limit"]["value"] == 30
    assert shown["rate_limit"]["source"].startswith("profile")
    assert shown["timeout"] == {"value": 9.0, "source": "env (CLOUDCHAT_TIMEOUT)"}
    assert shown["rate_window"] == {"value": 60.0, "source": "default"}
    assert shown["profile"] == {"value": "shop", "source": "flag (--profile)"}
    assert shown["api_key"]["value"] == "sk_test_…WXYZ"
    assert TEST_KEY not in proc.stdout
    cfg = tmp_path / "config" / "config.toml"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700
    table = cli("-p", "shop", "config", "show", CLOUDCHAT_API_KEY=TEST_KEY)
    assert "rate_limit" in table.stdout and "sk_test_…WXYZ" in table.stdout


def test_bad_values_and_unknown_settings_exit_2(cli):
    proc = cli("config", "set", "rate_limit", "fast")
    assert proc.returncode == 2 and "rate_limit" in proc.stderr and "integer" in proc.stderr
    proc = cli("config", "set", "colour", "red")
    assert proc.returncode == 2 and "unknown setting 'colour'" in proc.stderr
    proc = cli("config", "get", "colour")
    assert proc.returncode == 2


def test_profiles_and_use(cli):
    cli("-p", "shop", "config", "set", "timeout", "5")
    cli("-p", "blog", "config", "set", "timeout", "6")
    proc = cli("config", "profiles", "--json")
    assert json.loads(proc.stdout) == {"active": "default",
                                       "profiles": ["default", "shop", "blog"]}
    assert cli("config", "use", "blog").returncode == 0
    assert cli("config", "get", "timeout").stdout == "6.0\n"
    assert "* blog" in cli("config", "profiles").stdout
    assert cli("config", "get", "timeout", CLOUDCHAT_PROFILE="shop").stdout == "5.0\n"
    proc = cli("config", "use", "nope")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_unknown_profile_for_send_exit_2(cli):
    proc = cli("-p", "ghost", "send", "6281234567890", "hi", CLOUDCHAT_API_KEY=TEST_KEY)
    assert proc.returncode == 2 and "profile 'ghost'" in proc.stderr


def test_malformed_config_names_file_and_line(cli, tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "config.toml").write_text("[profiles.default]\ntimeout = = 3\n")
    proc = cli("config", "show")
    assert proc.returncode == 2
    assert str(cfg / "config.toml") in proc.stderr and "line 2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_config_key_warns(cli, tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "config.toml").write_text("[profiles.default]\ncolour = 'red'\ntimeout = 3\n")
    proc = cli("config", "get", "timeout")
    assert proc.returncode == 0 and proc.stdout == "3.0\n"
    assert "unknown setting 'colour'" in proc.stderr


def test_set_key_insecure_storage_roundtrip(cli, sandbox, tmp_path):
    proc = cli("config", "set-key", "--insecure-storage", input=TEST_KEY + "\n")
    assert proc.returncode == 0, proc.stderr
    assert TEST_KEY not in proc.stdout + proc.stderr
    creds = tmp_path / "config" / "credentials.toml"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert cli("send", "6281234567890", "Halo", "-q",
               CLOUDCHAT_BASE_URL=sandbox.base_url).returncode == 0
    assert "credentials file" in cli("config", "doctor", "--offline").stdout
    assert cli("config", "delete-key").returncode == 0
    assert cli("send", "6281234567890", "Halo", CLOUDCHAT_BASE_URL=sandbox.base_url).returncode == 3


def test_set_key_without_keyring_explains(cli):
    proc = cli("config", "set-key", input=TEST_KEY)
    assert proc.returncode == 3
    assert "no usable OS keyring" in proc.stderr and "Paste" not in proc.stderr
    # every other place a key can live, with how to use it
    for choice in ("--insecure-storage", "--api-key-file PATH", "CLOUDCHAT_API_KEY_FILE",
                   "CLOUDCHAT_API_KEY"):
        assert choice in proc.stderr
    assert TEST_KEY not in proc.stdout + proc.stderr


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run cloudchat with a pseudo-terminal as stdin/stdout/stderr and type nothing: a prompt
    would wait for input forever (the hang guard then fails the test)."""
    import os
    import pty
    import signal

    from tests.conftest import cloudchat_exe, read_terminal

    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execve(cloudchat_exe(), [cloudchat_exe(), *args], env)
    try:
        output = read_terminal(fd)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")


@pytest.mark.e2e
def test_set_key_on_a_terminal_without_keyring_does_not_prompt(env):
    code, output = _run_on_a_terminal(["config", "set-key"], env)
    assert code == 3, output
    assert "Paste" not in output and "--insecure-storage" in output


@pytest.mark.e2e
def test_set_key_insecure_storage_on_a_terminal_prompts(env):
    import os
    import pty

    from tests.conftest import cloudchat_exe

    pid, fd = pty.fork()
    if pid == 0:
        os.execve(cloudchat_exe(), [cloudchat_exe(), "config", "set-key", "--insecure-storage"],
                  env)
    seen = b""
    while b"Paste the API key" not in seen:
        seen += os.read(fd, 4096)
    os.write(fd, (TEST_KEY + "\n").encode())
    rest = b""
    try:
        while chunk := os.read(fd, 4096):
            rest += chunk
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, rest
    assert b"sk_test_\xe2\x80\xa6WXYZ" in rest and TEST_KEY.encode() not in seen + rest


def test_set_key_never_takes_an_argument(cli):
    proc = cli("config", "set-key", TEST_KEY)
    assert proc.returncode == 2 and "never taken on the command line" in proc.stderr
    assert TEST_KEY not in proc.stdout + proc.stderr


def test_empty_key_input_exit_2(cli):
    proc = cli("config", "set-key", "--insecure-storage", input="")
    assert proc.returncode == 2 and "no API key given" in proc.stderr


def test_doctor_no_keyring_is_a_warning_when_the_key_is_elsewhere(cli, sandbox):
    proc = cli("config", "doctor", CLOUDCHAT_BASE_URL=sandbox.base_url, CLOUDCHAT_API_KEY=TEST_KEY)
    assert proc.returncode == 0, proc.stdout
    assert "WARN keyring: none: disabled by CLOUDCHAT_NO_KEYRING" in proc.stdout
    assert "not needed, the key comes from env CLOUDCHAT_API_KEY" in proc.stdout
    assert "FAIL" not in proc.stdout
    assert "sk_test_…WXYZ from env CLOUDCHAT_API_KEY" in proc.stdout


def test_doctor_without_any_key_fails(cli, sandbox):
    proc = cli("config", "doctor", CLOUDCHAT_BASE_URL=sandbox.base_url)
    assert proc.returncode == 1
    assert "FAIL keyring" in proc.stdout and "FAIL api key" in proc.stdout
    assert "not tested: no API key" in proc.stdout
    assert sandbox.records() == []


def test_doctor_tests_the_key_without_sending(cli, sandbox_factory, tmp_path):
    box = sandbox_factory("--key", TEST_KEY)
    keyfile = tmp_path / "key"
    keyfile.write_text(TEST_KEY)
    keyfile.chmod(0o600)
    good = cli("--api-key-file", str(keyfile), "config", "doctor",
               CLOUDCHAT_BASE_URL=box.base_url)
    assert good.returncode == 0, good.stdout
    probe = [line for line in good.stdout.splitlines() if "base_url" in line]
    assert probe == [f"ok   base_url: {box.base_url} accepted the key sk_test_…WXYZ (GET "
                     "messages/doctor-probe → HTTP 404, as expected; nothing sent)"]
    bad = cli("config", "doctor", CLOUDCHAT_BASE_URL=box.base_url,
              CLOUDCHAT_API_KEY="sk_live_wrongwrongwrong9")
    assert bad.returncode == 1
    assert "FAIL base_url" in bad.stdout and "refused the key sk_live_…ong9 (HTTP 401" in bad.stdout
    assert "sk_live_wrongwrongwrong9" not in bad.stdout + bad.stderr
    assert [(r["method"], r["path"], r["status"]) for r in box.records()] == [
        ("GET", "/api/public/v1/messages/doctor-probe", 404),
        ("GET", "/api/public/v1/messages/doctor-probe", 401),
    ]
    offline = cli("config", "doctor", "--offline", CLOUDCHAT_BASE_URL=box.base_url,
                  CLOUDCHAT_API_KEY="sk_live_wrongwrongwrong9")
    assert offline.returncode == 0 and "base_url" not in offline.stdout
    assert len(box.records()) == 2  # --offline: nothing went out


def test_doctor_does_not_queue_behind_a_full_rate_limit_window(cli, sandbox):
    # one request an hour: the send takes the slot, and a doctor that queued for the next one
    # would wait an hour (the run would time out); it answers at once and says so
    limit = {"CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
             "CLOUDCHAT_RATE_LIMIT": "1", "CLOUDCHAT_RATE_WINDOW": "3600"}
    assert cli("send", "6281234567890", "hi", "-q", **limit).returncode == 0
    proc = cli("config", "doctor", **limit)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "base_url" in line)
    assert line.startswith("WARN base_url:") and "not tested: the key's rate limit reached" in line
    assert [r["path"] for r in sandbox.records()] == ["/api/public/v1/messages"]  # no probe


def test_doctor_json_and_unreachable_server(cli):
    proc = cli("config", "doctor", "--json", CLOUDCHAT_BASE_URL="http://127.0.0.1:9/x",
               CLOUDCHAT_API_KEY=TEST_KEY)
    assert proc.returncode == 1
    checks = {c["check"]: c for c in json.loads(proc.stdout)}
    assert checks["base_url"]["ok"] is False and "does not answer" in checks["base_url"]["detail"]
    assert checks["base_url"]["status"] == "fail"
    assert checks["api key"]["ok"] is True and checks["api key"]["status"] == "ok"
    assert checks["keyring"] == {"check": "keyring", "ok": True, "status": "warn",
                                 "detail": checks["keyring"]["detail"]}


@pytest.mark.parametrize(("status", "headers", "code", "line"), [
    (403, {}, 1, "FAIL base_url: {url} refused the key sk_test_…WXYZ (HTTP 403"),
    (200, {}, 0, "ok   base_url: {url} accepted the key sk_test_…WXYZ (GET messages/doctor-probe"
                 " → HTTP 200"),
    (500, {}, 1, "FAIL base_url: {url} answered HTTP 500"),
    (302, {"Location": "https://login.example/"}, 1,
     "FAIL base_url: {url} redirects GET messages/doctor-probe to https://login.example/"),
    (429, {"Retry-After": "30"}, 0, "WARN base_url: {url} answers, but the key is rate-limited"),
])
def test_doctor_against_other_servers(cli, status, headers, code, line):
    """Servers we did not write: whatever they answer, one line and the right exit code."""
    import http.server
    import threading

    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            body = b'{"message": "nope"}' if status >= 400 else b"{}"
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                 daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        proc = cli("config", "doctor", CLOUDCHAT_BASE_URL=url, CLOUDCHAT_API_KEY=TEST_KEY)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = [x for x in proc.stdout.splitlines() if "base_url" in x]
    assert len(lines) == 1 and lines[0].startswith(line.format(url=url)), lines
    assert seen == [("/v1/messages/doctor-probe", f"Bearer {TEST_KEY}")]  # once, never retried


def test_config_path(cli, tmp_path):
    proc = cli("config", "path")
    assert proc.stdout.strip() == str(tmp_path / "config" / "config.toml")


@pytest.mark.e2e
def test_version_and_module_entry(cli, env):
    import subprocess
    import sys

    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("cloudchat-cli ")
    assert "Python" in proc.stdout
    mod = subprocess.run([sys.executable, "-m", "cloudchat_cli", "--version"], env=env,
                         capture_output=True, text=True)
    assert mod.stdout == proc.stdout


def test_usage_error_exit_2(cli):
    proc = cli("send", "--bogus")
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_no_color_env_and_flag_have_no_ansi(cli, api_env):
    for extra in ({"NO_COLOR": "1"}, {}):
        proc = cli("--no-color", "send", "6281234567890", "hi", **api_env, **extra)
        assert "\x1b[" not in proc.stdout + proc.stderr


def test_paths_respect_overrides(env):
    assert env["CLOUDCHAT_CONFIG_DIR"] != os.path.expanduser("~/.config/cloudchat")


def test_doctor_names_the_transport_and_refuses_an_unknown_one(cli, sandbox):
    base = {"CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    for chosen, detail in [("", "wire (http.client)"),
                           ("httpx", "httpx's own (CLOUDCHAT_TRANSPORT=httpx)")]:
        proc = cli("config", "doctor", "--json", CLOUDCHAT_TRANSPORT=chosen, **base)
        checks = {c["check"]: c for c in json.loads(proc.stdout)}
        assert proc.returncode == 0 and checks["transport"]["detail"] == detail, proc.stdout
        assert checks["base_url"]["ok"] is True
    bad = cli("config", "doctor", CLOUDCHAT_TRANSPORT="curl", **base)
    assert bad.returncode == 1
    assert "FAIL transport: CLOUDCHAT_TRANSPORT must be one of" in bad.stdout
    assert len(sandbox.records()) == 2  # the unknown transport sent nothing
