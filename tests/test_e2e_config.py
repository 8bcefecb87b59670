"""End to end: `cloudchat config` — profiles, settings with sources, keys, doctor."""

import json
import os
import stat

import pytest

from .conftest import TEST_KEY

pytestmark = pytest.mark.e2e


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
    assert "CLOUDCHAT_API_KEY" in proc.stderr and "--insecure-storage" in proc.stderr


def test_set_key_never_takes_an_argument(cli):
    proc = cli("config", "set-key", TEST_KEY)
    assert proc.returncode == 2 and "never taken on the command line" in proc.stderr
    assert TEST_KEY not in proc.stdout + proc.stderr


def test_empty_key_input_exit_2(cli):
    proc = cli("config", "set-key", "--insecure-storage", input="")
    assert proc.returncode == 2 and "no API key given" in proc.stderr


def test_doctor(cli, sandbox):
    proc = cli("config", "doctor", CLOUDCHAT_BASE_URL=sandbox.base_url, CLOUDCHAT_API_KEY=TEST_KEY)
    assert proc.returncode == 1  # no keyring here: reported as a failed check
    assert "keyring" in proc.stdout and "CLOUDCHAT_NO_KEYRING" in proc.stdout
    assert "sk_test_…WXYZ from env CLOUDCHAT_API_KEY" in proc.stdout
    assert "answers (HTTP 404)" in proc.stdout
    checks = {c["check"]: c for c in json.loads(cli(
        "config", "doctor", "--json", CLOUDCHAT_BASE_URL="http://127.0.0.1:9/x",
        CLOUDCHAT_API_KEY=TEST_KEY).stdout)}
    assert checks["base_url"]["ok"] is False and "does not answer" in checks["base_url"]["detail"]
    assert checks["api key"]["ok"] is True


def test_config_path(cli, tmp_path):
    proc = cli("config", "path")
    assert proc.stdout.strip() == str(tmp_path / "config" / "config.toml")


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
