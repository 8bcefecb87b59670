"""Ctrl-C always means 130: real signals to the installed CLI while it waits.

Each test starts ``cloudchat`` as a subprocess, reads its stderr until it says it is waiting
(for the keyring, a retry, a rate-limit slot), then sends the signal. Nothing is guessed with
sleeps: the process tells us when it is in the wait.
"""

from __future__ import annotations

import signal
import subprocess
import textwrap

import pytest

from .conftest import cloudchat_exe
from .hostile import HostileServer

pytestmark = pytest.mark.e2e  # every test here starts a process

TO = "6281234567890"


def start(env, *args) -> subprocess.Popen:
    return subprocess.Popen([cloudchat_exe(), *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, needle: str) -> list[str]:
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"the CLI ended (rc={proc.wait()}) without saying {needle!r}: {seen}")


def interrupt(proc: subprocess.Popen, sig=signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, rest = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, rest


@pytest.fixture
def api():
    server = HostileServer("ok")
    yield server
    server.stop()


def test_ctrl_c_during_a_keyring_lookup_is_130_not_no_credentials(env, tmp_path, api):
    (tmp_path / "hang_keyring.py").write_text(textwrap.dedent('''
        import sys, threading
        from keyring.backend import KeyringBackend

        class HangKeyring(KeyringBackend):
            priority = 10

            def get_password(self, service, username):
                sys.stderr.write("KEYRING-WAIT\\n")
                sys.stderr.flush()
                threading.Event().wait()  # a locked keyring that never answers

            def set_password(self, service, username, password):
                raise RuntimeError("read only")

            def delete_password(self, service, username):
                raise RuntimeError("read only")
    '''))
    kenv = {k: v for k, v in env.items() if k != "CLOUDCHAT_NO_KEYRING"}
    kenv.update(PYTHONPATH=str(tmp_path), PYTHON_KEYRING_BACKEND="hang_keyring.HangKeyring",
                CLOUDCHAT_KEYRING_TIMEOUT="600", CLOUDCHAT_BASE_URL=api.base_url)
    proc = start(kenv, "send", TO, "Halo")
    wait_for(proc, "KEYRING-WAIT")
    code, rest = interrupt(proc)
    assert code == 130, rest
    assert "interrupted (Ctrl-C)" in rest and "no API key" not in rest
    assert "Traceback" not in rest
    assert api.requests == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_retry_wait_is_130_and_nothing_more_is_sent(env, sig):
    with HostileServer("retry-after", retry_after="300") as server:
        proc = start({**env, **server.env(CLOUDCHAT_MAX_RETRIES="3",
                                          CLOUDCHAT_MAX_RETRY_WAIT="3600")}, "send", TO, "Halo")
        wait_for(proc, "retry 1/3 in 300")
        code, rest = interrupt(proc, sig)
        assert code == 130, rest
        assert "interrupted" in rest and "Traceback" not in rest
        assert server.per_recipient() == {TO: 1}


def test_ctrl_c_while_waiting_for_a_rate_limit_slot_is_130(env, api):
    cenv = {**env, **api.env(CLOUDCHAT_RATE_LIMIT="1", CLOUDCHAT_RATE_WINDOW="600")}
    first = subprocess.run([cloudchat_exe(), "send", TO, "one"], env=cenv, capture_output=True,
                           stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    proc = start(cenv, "send", TO, "two")
    wait_for(proc, "for a rate-limit slot")
    code, rest = interrupt(proc)
    assert code == 130, rest
    assert "interrupted (Ctrl-C)" in rest and "Traceback" not in rest
    assert api.per_recipient() == {TO: 1}
