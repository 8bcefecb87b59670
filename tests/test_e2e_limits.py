"""Limits are checked before work, and bad values are usage errors: every file the user names
is refused before it is read when it is a FIFO, a device or too large (no hang, no OOM), and
every odd number gets its documented exit code with one line — never "internal error"."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import TEST_KEY, cloudchat_exe, run_cli
from .hostile import HostileServer

TO = "6281234567890"


@pytest.fixture
def api():
    server = HostileServer("ok")
    yield server
    server.stop()


@pytest.fixture
def fifo(tmp_path) -> str:
    path = tmp_path / "fifo"
    os.mkfifo(path)  # no writer: opening it for reading would block forever
    return str(path)


@pytest.fixture
def huge(tmp_path) -> str:
    path = tmp_path / "huge.bin"
    with path.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of size, no disk
    return str(path)


def one_line(proc, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("Error:"), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("which", ["fifo", "device", "huge"])
def test_api_input_and_typed_field_files_are_checked_before_reading(env, api, which, request):
    path = {"fifo": lambda: request.getfixturevalue("fifo"), "device": lambda: "/dev/zero",
            "huge": lambda: request.getfixturevalue("huge")}[which]()
    expected = "too large" if which == "huge" else "not a regular file"
    aenv = {**env, **api.env()}
    one_line(run_cli("api", "POST", "messages", "--input", path, env=aenv), 2, expected)
    one_line(run_cli("api", "POST", "messages", "-F", f"x=@{path}", env=aenv), 2, expected)
    assert api.requests == []


@pytest.mark.parametrize("which", ["fifo", "device", "huge"])
def test_api_key_file_is_checked_before_reading(env, api, which, request):
    path = {"fifo": lambda: request.getfixturevalue("fifo"), "device": lambda: "/dev/zero",
            "huge": lambda: request.getfixturevalue("huge")}[which]()
    kenv = {k: v for k, v in {**env, **api.env()}.items() if k != "CLOUDCHAT_API_KEY"}
    proc = run_cli("--api-key-file", path, "send", TO, "Halo", env=kenv)
    one_line(proc, 3, "API key file", "too large" if which == "huge" else "not a regular file")
    assert api.requests == []


def test_config_and_secret_files_are_checked_before_reading(env, tmp_path, fifo, huge):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    os.mkfifo(config_dir / "config.toml")
    one_line(run_cli("config", "show", env=env), 2, "config file", "not a regular file")
    (config_dir / "config.toml").unlink()
    os.symlink(huge, config_dir / "config.toml")
    one_line(run_cli("config", "show", env=env), 2, "config file", "too large")
    (config_dir / "config.toml").unlink()
    body = tmp_path / "body.json"
    body.write_text("{}")
    for path, needle in ((fifo, "not a regular file"), (huge, "too large")):
        proc = run_cli("webhook", "sign", str(body), "--secret-file", path, env=env)
        one_line(proc, 2, "webhook secret file", needle)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_typed_fields_are_usage_errors(env, api, value):
    proc = run_cli("api", "POST", "messages", "-F", f"x={value}", env={**env, **api.env()})
    one_line(proc, 2, "not a finite number")
    assert api.requests == []


def test_absurd_timeout_is_a_usage_error(env, api):
    proc = run_cli("send", TO, "Halo", env={**env, **api.env(CLOUDCHAT_TIMEOUT="1e308")})
    one_line(proc, 2, "timeout", "at most 86400")
    one_line(run_cli("config", "set", "timeout", "1e308", env=env), 2, "at most 86400")
    assert api.requests == []


def test_stdin_text_past_the_limit_is_too_long_not_bad_utf8(env, api):
    text = "é" * 9000  # 18000 bytes: the read limit falls inside a character
    proc = run_cli("send", TO, env={**env, **api.env()}, input=text)
    one_line(proc, 2, "too long")
    assert "UTF-8" not in proc.stderr
    assert api.requests == []


def as_unprivileged(env: dict[str, str]) -> dict:
    """subprocess.run arguments that drop root (to whom every directory is writable)."""
    if os.geteuid() != 0:
        return {}
    try:
        probe = subprocess.run([cloudchat_exe(), "--version"], env=env, user=65534,
                               group=65534, extra_groups=[], capture_output=True,
                               stdin=subprocess.DEVNULL).returncode
    except PermissionError:
        probe = 126
    if probe != 0:
        pytest.skip("running as root, and the installed CLI is not runnable by `nobody`")
    return {"user": 65534, "group": 65534, "extra_groups": []}


def read_only_as_root(directory: Path, argv: list[str]) -> list[str] | None:
    """As root, run ``argv`` in a private mount namespace where ``directory`` is a read-only
    bind mount (root writes into any 0555 directory); None where that is not possible."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    wrapped = ["unshare", "-m", "sh", "-c", script, "sh", str(directory), *argv]
    probe = subprocess.run([*wrapped[:-len(argv)], "true"], capture_output=True)
    return wrapped if probe.returncode == 0 else None


@pytest.mark.e2e
def test_config_set_in_a_read_only_directory_is_one_line(env):
    base = Path(tempfile.mkdtemp(prefix="cc-ro-"))
    try:
        base.chmod(0o755)
        config_dir = base / "config"
        config_dir.mkdir()
        config_dir.chmod(0o555)
        renv = {**env, "CLOUDCHAT_CONFIG_DIR": str(config_dir), "HOME": str(base)}
        argv = [cloudchat_exe(), "config", "set", "timeout", "5"]
        wrapped = read_only_as_root(config_dir, argv)
        extra = {} if wrapped else as_unprivileged(renv)
        proc = subprocess.run(wrapped or argv, env=renv, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60, **extra)
        reason = "Read-only file system" if wrapped else "ermission denied"
        one_line(proc, 2, "cannot write config file", reason)
        assert not (config_dir / "config.toml").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.e2e
def test_config_set_that_cannot_write_is_one_line_even_as_root(env):
    # RLIMIT_FSIZE = 0: every write fails with EFBIG (Python ignores SIGXFSZ), whoever we are.
    def no_writes() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    proc = subprocess.run([cloudchat_exe(), "config", "set", "timeout", "5"], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                          preexec_fn=no_writes)
    one_line(proc, 2, "cannot write config file", "File too large")


def test_an_ordinary_key_file_still_works(env, api, tmp_path):
    key = tmp_path / "key"
    key.write_text(TEST_KEY + "\n")
    key.chmod(0o600)
    kenv = {k: v for k, v in {**env, **api.env()}.items() if k != "CLOUDCHAT_API_KEY"}
    proc = run_cli("--api-key-file", str(key), "send", TO, "Halo", env=kenv)
    assert proc.returncode == 0, proc.stderr
    assert api.requests[0].headers["authorization"] == f"Bearer {TEST_KEY}"
