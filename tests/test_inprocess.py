"""The in-process runner (tests/inprocess.py) gives each call what a fresh process would have,
and takes it back afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from . import inprocess
from .conftest import run_cli


def test_the_call_sees_the_given_environment_and_the_test_keeps_its_own(env, monkeypatch):
    monkeypatch.setenv("CLOUDCHAT_BASE_URL", "http://test-process.invalid/api")
    proc = run_cli("config", "show", "--json",
                   env={**env, "CLOUDCHAT_BASE_URL": "http://given.invalid/api"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["base_url"]["value"] == "http://given.invalid/api"
    assert os.environ["CLOUDCHAT_BASE_URL"] == "http://test-process.invalid/api"


def test_streams_argv_cwd_handlers_and_app_state_are_put_back(env, tmp_path):
    before = (sys.stdin, sys.stdout, sys.stderr, sys.argv, os.getcwd(),
              signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    send = ("--sandbox", "send", "6281234567890", "Hi")
    proc = run_cli("--debug", "--no-color", *send, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    after = (sys.stdin, sys.stdout, sys.stderr, sys.argv, os.getcwd(),
             signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert after == before
    assert "debug:" in proc.stderr
    proc = run_cli(*send, env=env)  # --debug belonged to the call before
    assert proc.returncode == 0 and "debug:" not in proc.stderr


def test_bytes_that_are_not_utf8_reach_the_command_as_a_pipe_would_bring_them(env):
    proc = run_cli("webhook", "verify", "--signature", "0" * 64, "-", input=b"\xff\xfe{",
                   env={**env, "CLOUDCHAT_WEBHOOK_SECRET": "whsec_x"})
    assert proc.returncode == 1, proc.stderr  # read as bytes and checked, not a decode error
    assert "Traceback" not in proc.stderr


def test_a_thread_the_command_leaves_running_fails_the_test(env, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(inprocess, "THREAD_GRACE", 0.01)
    monkeypatch.setattr("cloudchat_cli.core.paths.config_dir", _starts_a_thread(release))
    try:
        with pytest.raises(AssertionError, match="left threads running: .*'leaked'"):
            run_cli("config", "path", env=env)
    finally:
        release.set()


def _starts_a_thread(release: threading.Event):
    from cloudchat_cli.core import paths

    original = paths.config_dir

    def config_dir(env=None):
        threading.Thread(target=release.wait, name="leaked", daemon=True).start()
        return original(env)

    return config_dir


def test_a_hang_gets_ctrl_c_then_timeout_expired_like_subprocess_run(env):
    # The sandbox serves until Ctrl-C: the runner's watchdog delivers one.
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_cli("sandbox", "--port", "0", env=env, timeout=0.2)
    assert b"listening on" in info.value.output and b"Sandbox stopped" in info.value.stderr


def test_from_another_thread_it_says_to_use_a_process(env):
    errors = []

    def call():
        try:
            run_cli("--help", env=env)
        except AssertionError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert errors and "process=True" in errors[0]
