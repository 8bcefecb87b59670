"""One stop model (core/stop.py), with real signals to the installed CLI.

First Ctrl-C/SIGTERM: finish what is in flight, then stop (exit 130; ``webhook listen``: 0).
Second: stop without waiting, and say exactly what that leaves behind. Every wait ends with
130. The process tells us when it is in the wait (a stderr line, or the request it made); no
sleep stands in for that.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from collections import Counter

import pytest

from .conftest import cloudchat_exe, run_cli
from .hostile import HostileServer
from .test_e2e_interrupt import interrupt, start, wait_for

pytestmark = pytest.mark.e2e  # every test here signals a real process


def until(condition, what: str, limit: float = 30.0) -> None:
    """Wait for a condition another process makes true (not a fixed sleep)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def said_until(lis, needle: str) -> str:
    """What a listener said on stderr, up to the line holding ``needle`` (read as it comes)."""
    lines = []
    while not lines or needle not in lines[-1]:
        lines.append(lis.errors.get(timeout=30))
    return "".join(lines)


def customers(tmp_path, n: int):
    path = tmp_path / "customers.csv"
    path.write_text("to,name\n" + "".join(f"62812345{i:03d}7,c{i}\n" for i in range(n)),
                    encoding="utf-8")
    return path


def report_states(path) -> Counter:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return Counter(row["status"] for row in csv.DictReader(fh))


def test_broadcast_second_ctrl_c_stops_without_the_request_in_flight(tmp_path, env):
    path, report = customers(tmp_path, 3), tmp_path / "report.csv"
    with HostileServer("slow-status") as api:  # takes the request, never finishes answering
        proc = start({**env, **api.env(CLOUDCHAT_TIMEOUT="3600")}, "broadcast", str(path),
                     "-t", "Hi {name}", "--yes", "--concurrency", "1", "--report", str(report))
        until(lambda: len(api.requests) == 1, "the first row's request reached the server")
        proc.send_signal(signal.SIGINT)
        wait_for(proc, "Stopping: letting requests in flight finish (Ctrl-C again")
        assert proc.poll() is None  # the first Ctrl-C waits for the answer in flight
        code, rest = interrupt(proc)
    assert code == 130, rest
    assert "Stopping at once: not waiting for the requests in flight" in rest
    assert "broadcast interrupted: 0 sent, 0 failed, 1 unknown, 2 pending" in rest
    assert "1 row(s) were in flight and are unknown" in rest and "--retry-unknown" in rest
    assert "resume with: cloudchat broadcast" in rest and "Traceback" not in rest
    assert len(api.requests) == 1  # nothing more was sent after the first Ctrl-C
    assert report_states(report) == {"unknown": 1, "pending": 2}
    # Nothing lost: the journal knows the same, and resuming sends the rest exactly once.
    status = run_cli("broadcast", "status", "--json", env=env)
    (item,) = json.loads(status.stdout)
    assert (item["unknown"], item["pending"], item["sent"]) == (1, 2, 0)
    with HostileServer("ok") as ok:
        again = run_cli("broadcast", str(path), "-t", "Hi {name}", "--yes", "--concurrency", "1",
                        "--retry-unknown", env={**env, **ok.env()})
        assert again.returncode == 0, again.stderr
        assert sorted(ok.per_recipient().values()) == [1, 1, 1]


def test_broadcast_ctrl_c_during_a_retry_after_wait_is_130_and_keeps_the_row(tmp_path, env):
    path, report = customers(tmp_path, 2), tmp_path / "report.csv"
    with HostileServer("retry-after", retry_after="300") as api:
        proc = start({**env, **api.env(CLOUDCHAT_MAX_RETRIES="3",
                                       CLOUDCHAT_MAX_RETRY_WAIT="3600")},
                     "broadcast", str(path), "-t", "Hi {name}", "--yes", "--concurrency", "1",
                     "--report", str(report))
        until(lambda: len(api.requests) == 1, "the first request was answered 429")
        code, rest = interrupt(proc, signal.SIGTERM)
    assert code == 130, rest
    assert "broadcast interrupted: 0 sent, 0 failed, 0 unknown, 2 pending" in rest
    assert "in flight and are unknown" not in rest and "Traceback" not in rest
    assert len(api.requests) == 1  # the wait ended: no retry went out
    assert report_states(report) == {"pending": 2}


def test_broadcast_ctrl_c_at_the_slot_wait_of_a_quiet_run_is_130(tmp_path, env):
    path = customers(tmp_path, 3)
    with HostileServer("ok") as api:
        proc = subprocess.Popen(
            [cloudchat_exe(), "broadcast", str(path), "-t", "Hi {name}", "--yes", "--quiet",
             "--spacing", "burst"],
            env={**env, **api.env(CLOUDCHAT_RATE_LIMIT="1", CLOUDCHAT_RATE_WINDOW="600")},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        until(lambda: len(api.requests) == 1, "the one request the limit allows")
        code, rest = interrupt(proc)
    assert code == 130, rest
    assert "broadcast interrupted: 1 sent, 0 failed, 0 unknown, 2 pending" in rest
    assert "Stopping" not in rest  # --quiet: only the outcome
    assert len(api.requests) == 1


def test_trigger_ctrl_c_during_its_retry_wait_is_130(wenv):
    with HostileServer("500") as app:
        proc = start(wenv, "webhook", "trigger", f"http://127.0.0.1:{app.port}/hook")
        wait_for(proc, "attempt 1: HTTP 500")  # now waiting 2 s before attempt 2
        code, rest = interrupt(proc)
    assert code == 130, rest
    assert "interrupted (Ctrl-C)" in rest and "Traceback" not in rest
    assert len(app.requests) < 4  # the retries did not run to their end


def test_listen_second_ctrl_c_skips_the_queued_exec_commands_and_says_so(tmp_path, wenv):
    import os

    from .test_e2e_webhook import Listener, event_body

    fifo, saved = tmp_path / "exec-started", tmp_path / "events"
    os.mkfifo(fifo)
    # The command reports its PID through the FIFO (the ready signal), then blocks.
    lis = Listener(wenv, "--save", str(saved), "--exec",
                   f"sh -c 'echo $$ > {fifo}; exec sleep 600'")
    try:
        for n in range(3):
            assert lis.post(event_body(f"evt_stop_{n}")).status_code == 200
        with open(fifo) as fh:  # blocks until the first --exec command runs
            pid = int(fh.read())
        lis.proc.send_signal(signal.SIGINT)
        lis.error_line("Stopping: finishing deliveries in flight (Ctrl-C again")
        assert lis.proc.poll() is None  # the first Ctrl-C waits for the --exec commands
        lis.proc.send_signal(signal.SIGINT)
        assert lis.proc.wait(60) == 130
    finally:
        if lis.proc.poll() is None:
            lis.proc.kill()
        with __import__("contextlib").suppress(NameError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    said = said_until(lis, "interrupted again")
    assert "Stopping at once: not waiting for deliveries in flight" in said
    assert "Stopped after 3 event(s), 0 duplicate(s), 0 rejected" in said
    assert "interrupted again (Ctrl-C): stopped at once; --exec was not run for 2 event(s)" \
        in said
    assert "Traceback" not in said
    assert len(list(saved.glob("*.json"))) == 3  # every acknowledged event is on disk


def test_listen_sigterm_before_serving_still_stops_cleanly_with_0(wenv):
    lis = start(wenv, "webhook", "listen", "--port", "0")
    wait_for(lis, "Listening on")
    code, rest = interrupt(lis, signal.SIGTERM)
    assert code == 0, rest
    assert "Stopped after 0 event(s)" in rest and "Traceback" not in rest


def test_listen_second_ctrl_c_does_not_wait_for_a_stalled_delivery(wenv):
    import socket
    from urllib.parse import urlsplit

    from cloudchat_cli.services.webhooks.signature import sign

    from .test_e2e_webhook import SECRET, Listener, event_body

    lis = Listener(wenv, "--read-timeout", "3600")
    url = urlsplit(lis.url)
    body = event_body("evt_stalled")
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-CloudChat-Signature: {sign(SECRET, body)}\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    try:
        with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
            sock.sendall(head)
            assert b"100 Continue" in sock.recv(1024)  # it is reading this delivery's body
            sock.sendall(body[:10])  # ... and never gets the rest
            lis.proc.send_signal(signal.SIGINT)
            lis.error_line("Stopping: finishing deliveries in flight (Ctrl-C again")
            assert lis.proc.poll() is None  # the first Ctrl-C waits for the delivery
            lis.proc.send_signal(signal.SIGINT)
            assert lis.proc.wait(60) == 130
            assert sock.recv(1024) == b""  # closed unanswered: CloudChat retries it
    finally:
        if lis.proc.poll() is None:
            lis.proc.kill()
    said = said_until(lis, "interrupted again")
    assert "Stopping at once: not waiting for deliveries in flight (CloudChat retries" in said
    assert "Stopped after 0 event(s)" in said and "Traceback" not in said
    assert "interrupted again (Ctrl-C): stopped at once" in said
