"""End to end, real processes: the durable forward queue, replay, /healthz, the systemd unit.

The app is a separate process that checks signatures with its own HMAC code (Python's hmac,
and node's crypto), so "delivered" means the app accepted the exact bytes CloudChat signed.
Backoff is set small so each test takes seconds; every wait is on something observable (a
line the listener or the app prints, a file), never a sleep.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from cloudchat_cli.services.webhooks.signature import sign

from .conftest import run_cli
from .ports import free_port
from .test_e2e_webhook import SECRET, Listener, event_body

RECEIVERS = Path(__file__).parent / "receivers"
FAST = ("--forward-retry-delays", "0.1,0.2", "--forward-max-delay", "0.3")


@pytest.fixture
def wenv(env):
    return {**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET}


class App:
    """The user's app: a verifying receiver in its own process."""

    def __init__(self, port: int = 0, *, lang: str = "python", status: int = 200):
        cmd = ([sys.executable, str(RECEIVERS / "verify_receiver.py"), str(port), str(status)]
               if lang == "python" else
               ["node", str(RECEIVERS / "verify_receiver.js"), str(port)])
        self.proc = subprocess.Popen(cmd, env={"WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        first = self.proc.stdout.readline()
        assert "listening on" in first, first
        self.url = first.split("listening on ", 1)[1].strip()
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def received(self, n: int, timeout: float = 60) -> list[dict]:
        return [self.lines.get(timeout=timeout) for _ in range(n)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def apps():
    started: list[App] = []

    def start(*args, **kw) -> App:
        app = App(*args, **kw)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture
def listeners(wenv):
    started: list[Listener] = []

    def start(*args, env=None) -> Listener:
        item = Listener(env or wenv, *args)
        started.append(item)
        return item

    yield start
    for item in started:
        if item.proc.poll() is None:
            item.proc.kill()
            item.proc.wait()


def health(lis: Listener) -> dict:
    root = lis.url.split("/", 3)
    response = httpx.get(f"{root[0]}//{root[2]}/healthz", timeout=10)
    assert response.status_code == 200
    return response.json()


def post_all(lis: Listener, ids: list[str]) -> None:
    for event_id in ids:
        response = lis.post(event_body(event_id, text=f"text of {event_id}"))
        assert (response.status_code, response.json()) == (200, {"status": "ok"})


# --- app down, then up ---------------------------------------------------------------------


@pytest.mark.e2e
def test_app_down_events_saved_then_app_up_all_delivered_once_in_order(tmp_path, listeners,
                                                                        apps):
    port = free_port()  # nothing listens there yet: the app is down
    events_dir = tmp_path / "events"
    lis = listeners("--save", str(events_dir), "--forward-to", f"http://127.0.0.1:{port}/hook",
                    *FAST)
    ids = [f"evt_q{i:02d}" for i in range(20)]
    post_all(lis, ids)  # CloudChat gets its 200s while the app is down
    assert len(list(events_dir.glob("*.json"))) == 20
    assert "is not taking events" in lis.error_line("is not taking events")
    assert health(lis)["forward"]["waiting"] == 20  # nothing can have been delivered
    app = apps(port)
    got = app.received(20)
    assert [g["id"] for g in got] == ids and all(g["valid"] for g in got)
    assert "every waiting event is delivered" in lis.error_line("is back")
    assert health(lis)["forward"] == {"waiting": 0, "delivered": 20, "given_up": 0}
    assert lis.stop() == 0
    assert app.lines.empty()  # exactly once: nothing sent again on stop
    summary = "".join(lis.errors.queue)
    assert "nothing waiting to be forwarded" in summary and "Traceback" not in summary


@pytest.mark.e2e
def test_listener_killed_with_a_pending_queue_resumes_it_after_restart(tmp_path, wenv,
                                                                      listeners, apps):
    port = free_port()
    args = ("--save", str(tmp_path / "events"), "--forward-to",
            f"http://127.0.0.1:{port}/hook", *FAST)
    first = listeners(*args)
    ids = [f"evt_k{i:02d}" for i in range(10)]
    post_all(first, ids)
    first.error_line("is not taking events")
    first.proc.send_signal(signal.SIGKILL)  # no shutdown of any kind
    first.proc.wait()
    second = listeners(*args)
    assert "10 event(s) waiting from an earlier run" in second.error_line("earlier run")
    assert second.post(event_body("evt_k03")).json()["status"] == "duplicate"  # CloudChat retry
    post_all(second, ["evt_k10"])
    app = apps(port)
    got = app.received(11)
    assert [g["id"] for g in got] == ids + ["evt_k10"] and all(g["valid"] for g in got)
    second.error_line("is back")
    assert second.stop() == 0 and app.lines.empty()


@pytest.mark.e2e
def test_sigusr1_retries_the_queue_now_instead_of_waiting_out_the_backoff(tmp_path, listeners,
                                                                         apps):
    port = free_port()
    lis = listeners("--save", str(tmp_path / "events"), "--forward-to",
                    f"http://127.0.0.1:{port}/hook", "--forward-retry-delays", "3600")
    post_all(lis, ["evt_u1", "evt_u2"])
    lis.error_line("is not taking events")  # the next attempt is an hour away
    app = apps(port)
    lis.proc.send_signal(signal.SIGUSR1)
    assert "retrying 2 waiting event(s) now" in lis.error_line("retrying")
    assert [g["id"] for g in app.received(2)] == ["evt_u1", "evt_u2"]
    lis.error_line("is back")
    assert lis.stop() == 0


@pytest.mark.e2e
def test_a_periodic_line_says_how_many_wait(tmp_path, listeners):
    port = free_port()
    lis = listeners("--forward-to", f"http://127.0.0.1:{port}/hook", *FAST,
                    "--status-every", "0.2")
    post_all(lis, ["evt_w1", "evt_w2", "evt_w3"])
    # a line may come before the third event is queued ("1 event(s) waiting"): the app is
    # down, so the count must reach 3 and stay there; wait for that line, not the first one
    line = lis.error_line("3 event(s) waiting for")
    assert "oldest" in line


@pytest.mark.e2e
def test_stop_with_the_app_down_says_how_many_wait_and_the_next_run_sends_them(tmp_path,
                                                                             listeners, apps):
    port = free_port()
    args = ("--forward-to", f"http://127.0.0.1:{port}/hook", *FAST)  # no --save: state dir
    first = listeners(*args)
    post_all(first, ["evt_s1", "evt_s2"])
    first.error_line("is not taking events")
    assert first.stop() == 0
    assert "2 waiting to be forwarded" in "".join(first.errors.queue)
    app = apps(port)
    second = listeners(*args)
    assert [g["id"] for g in app.received(2)] == ["evt_s1", "evt_s2"]
    second.error_line("is back")
    outbox = list((tmp_path / "state" / "webhooks" / "outbox").iterdir())
    assert len(outbox) == 1 and not list(outbox[0].glob("*.json"))  # delivered: removed


@pytest.mark.e2e
def test_app_refusing_one_event_gives_it_up_and_the_rest_go_on(tmp_path, listeners, apps):
    app = apps(status=422)  # the app is up, and says no to every event
    lis = listeners("--save", str(tmp_path / "events"), "--forward-to", app.url, *FAST)
    post_all(lis, ["evt_r1"])
    assert app.received(1)[0]["status"] == 422
    line = lis.error_line("given up")
    assert "HTTP 422" in line and "webhook replay" in line
    assert health(lis)["forward"] == {"waiting": 0, "delivered": 0, "given_up": 1}


@pytest.mark.e2e
def test_an_event_past_the_give_up_time_is_given_up_and_stays_saved(tmp_path, listeners):
    port = free_port()
    lis = listeners("--save", str(tmp_path / "events"), "--forward-to",
                    f"http://127.0.0.1:{port}/hook", *FAST, "--forward-give-up-after", "0")
    post_all(lis, ["evt_g1", "evt_g2"])
    assert "evt_g1" in lis.error_line("given up after")
    assert "evt_g2" in lis.error_line("given up after")
    assert health(lis)["forward"]["given_up"] == 2
    assert len(list((tmp_path / "events").glob("*.json"))) == 2


@pytest.mark.e2e
def test_forwarding_is_quiet_unless_verbose(tmp_path, listeners, apps):
    app = apps()
    quiet = listeners("--forward-to", app.url)
    post_all(quiet, ["evt_v1"])
    app.received(1)
    assert quiet.event()["id"] == "evt_v1"
    assert quiet.stop() == 0
    assert not [line for line in quiet.errors.queue if "forward" in line and "HTTP" in line]
    loud = listeners("--forward-to", app.url, "--verbose")
    post_all(loud, ["evt_v2"])
    assert "HTTP 200" in loud.error_line("forward ")


@pytest.mark.e2e
def test_healthz_answers_counts_and_never_event_contents(tmp_path, listeners):
    lis = listeners("--save", str(tmp_path / "events"), "--path", "/webhook")
    post_all(lis, ["evt_h1"])
    assert health(lis) == {"status": "ok"}  # not forwarding: no queue
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run([curl, "-sf", lis.url.replace("/webhook", "/healthz")],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0 and json.loads(out.stdout) == {"status": "ok"}
        assert "text of" not in out.stdout
    assert httpx.post(lis.url.replace("/webhook", "/healthz"), content=b"{}",
                      timeout=10).status_code in (401, 404)


def test_an_unusable_outbox_is_refused_at_start(tmp_path, wenv):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")  # the state dir cannot be created: events could not wait there
    proc = run_cli("webhook", "listen", "--port", "0", "--forward-to", "http://127.0.0.1:9/h",
                   env={**wenv, "CLOUDCHAT_STATE_DIR": str(blocked)})
    assert proc.returncode == 2 and "cannot use" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("flag", "value"), [
    ("--forward-max-delay", "soon"), ("--forward-give-up-after", "-1d"),
    ("--forward-to", "file:///etc/passwd"), ("--status-every", "nan")])
def test_bad_queue_options_exit_2(wenv, flag, value):
    proc = run_cli("webhook", "listen", "--port", "0", flag, value, env=wenv)
    assert proc.returncode == 2, proc.stderr
    assert (flag in proc.stderr or "URL" in proc.stderr) and "Traceback" not in proc.stderr


# --- replay ----------------------------------------------------------------------------------


def saved_dir(tmp_path: Path, listeners, ids: list[str]) -> Path:
    events_dir = tmp_path / "events"
    lis = listeners("--save", str(events_dir))
    post_all(lis, ids)
    assert lis.stop() == 0
    return events_dir


@pytest.mark.e2e
@pytest.mark.parametrize("lang", ["python", "node"])
def test_replay_into_a_verifying_app_byte_exact_in_order(tmp_path, wenv, listeners, apps,
                                                         lang):
    if lang == "node" and not shutil.which("node"):
        pytest.skip("node is not installed")
    ids = ["evt_p1", "evt_p2", "evt_p3"]
    events_dir = saved_dir(tmp_path, listeners, ids)
    app = apps(lang=lang)
    done = run_cli("webhook", "replay", str(events_dir), "--to", app.url, env=wenv)
    assert done.returncode == 0, done.stderr
    got = app.received(3)
    assert [g["id"] for g in got] == ids and all(g["valid"] for g in got)
    import hashlib
    assert [g["sha256"] for g in got] == [
        hashlib.sha256(event_body(i, text=f"text of {i}")).hexdigest() for i in ids]
    again = run_cli("webhook", "replay", str(events_dir), "--to", app.url, env=wenv)
    assert again.returncode == 0 and "nothing to replay" in again.stderr
    one = run_cli("webhook", "replay", str(events_dir), "--to", app.url, "--all", "--id",
                  "evt_p2", env=wenv)
    assert one.returncode == 0 and [g["id"] for g in app.received(1)] == ["evt_p2"]
    assert app.lines.empty()


@pytest.mark.e2e
def test_replay_since_selects_by_receive_time(tmp_path, wenv, listeners, apps):
    events_dir = saved_dir(tmp_path, listeners, ["evt_old", "evt_new"])
    old = next(p for p in events_dir.glob("evt_old*.json"))
    record = json.loads(old.read_text())
    record["received_at"] -= 3 * 3600  # received three hours ago
    old.write_text(json.dumps(record) + "\n")
    app = apps()
    done = run_cli("webhook", "replay", str(events_dir), "--to", app.url, "--since", "2h",
                   "--json", env=wenv)
    assert done.returncode == 0
    assert json.loads(done.stdout)["delivered"] == ["evt_new"]
    assert [g["id"] for g in app.received(1)] == ["evt_new"] and app.lines.empty()


@pytest.mark.e2e
def test_replay_stops_at_a_failing_event_keeping_order_with_trigger_exit_codes(
        tmp_path, wenv, listeners, apps):
    events_dir = saved_dir(tmp_path, listeners, ["evt_f1", "evt_f2"])
    app = apps(status=500)
    failed = run_cli("webhook", "replay", str(events_dir), "--to", app.url, "--no-retry",
                     env=wenv)
    assert failed.returncode == 6 and "1 later event(s) not sent" in failed.stderr
    assert [g["id"] for g in app.received(1)] == ["evt_f1"] and app.lines.empty()
    down = run_cli("webhook", "replay", str(events_dir), "--to",
                   f"http://127.0.0.1:{free_port()}/hook", "--no-retry", env=wenv)
    assert down.returncode == 7
    bad = run_cli("webhook", "replay", str(events_dir), "--to", app.url, "--id", "evt_nope",
                  env=wenv)
    assert bad.returncode == 2 and "evt_nope" in bad.stderr
    missing = run_cli("webhook", "replay", str(tmp_path / "nope"), "--to", app.url, env=wenv)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


@pytest.mark.e2e
def test_replayed_events_are_not_forwarded_again_by_the_listener(tmp_path, wenv, listeners,
                                                                 apps):
    port = free_port()
    events_dir = tmp_path / "events"
    args = ("--save", str(events_dir), "--forward-to", f"http://127.0.0.1:{port}/hook", *FAST)
    lis = listeners(*args)
    post_all(lis, ["evt_m1", "evt_m2"])
    lis.error_line("is not taking events")
    assert lis.stop() == 0
    other = apps()  # the operator sends them to another app by hand meanwhile
    assert run_cli("webhook", "replay", str(events_dir), "--to", other.url,
                   env=wenv).returncode == 0
    assert [g["id"] for g in other.received(2)] == ["evt_m1", "evt_m2"]
    app = apps(port)
    again = listeners(*args)
    post_all(again, ["evt_m3"])
    assert [g["id"] for g in app.received(1)] == ["evt_m3"]
    again.stop()
    assert app.lines.empty()


# --- saved events know when they arrived -------------------------------------------------------


@pytest.mark.e2e
def test_verify_dir_max_age_uses_the_receive_time(tmp_path, wenv, listeners):
    events_dir = saved_dir(tmp_path, listeners, ["evt_a1"])
    check = run_cli("webhook", "verify", "--dir", str(events_dir), "--max-age", "300",
                    env=wenv)
    assert check.returncode == 1 and "stale" in check.stdout  # 2023's event, received now
    record_path = next(events_dir.glob("*.json"))
    record = json.loads(record_path.read_text())
    record["received_at"] = 1700000000 + 12  # it arrived 12 s after CloudChat sent it
    record_path.write_text(json.dumps(record) + "\n")
    check = run_cli("webhook", "verify", "--dir", str(events_dir), "--max-age", "300",
                    env=wenv)
    assert check.returncode == 0, check.stdout
    record["received_at"] = 1700000000 + 301
    record_path.write_text(json.dumps(record) + "\n")
    check = run_cli("webhook", "verify", "--dir", str(events_dir), "--max-age", "300",
                    env=wenv)
    assert check.returncode == 1 and "301 s old" in check.stdout


@pytest.mark.e2e
def test_verify_dir_max_age_passes_an_event_received_fresh(tmp_path, wenv, listeners):
    events_dir = tmp_path / "events"
    lis = listeners("--save", str(events_dir))
    assert lis.post(event_body("evt_fresh", ts=int(time.time()))).status_code == 200
    assert lis.stop() == 0
    check = run_cli("webhook", "verify", "--dir", str(events_dir), "--max-age", "300",
                    env=wenv)
    assert check.returncode == 0, check.stdout


# --- systemd ---------------------------------------------------------------------------------


def test_print_systemd_unit_runs_the_same_command_without_the_secret(tmp_path, wenv):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    proc = run_cli("webhook", "listen", "--port", "8080", "--save", "./events", "--forward-to",
                   "http://127.0.0.1:3000/hook", "--secret-file", str(secret_file),
                   "--optout-keywords", "STOP,BERHENTI", "--print-systemd-unit", env=wenv)
    assert proc.returncode == 0, proc.stderr
    unit = proc.stdout
    assert SECRET not in unit
    sections = [line for line in unit.splitlines() if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]", "[Install]"]
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = exec_line.split()
    assert words[0].startswith("ExecStart=/") and words[0].endswith("cloudchat")
    assert words[1:] == ["webhook", "listen", "--port", "8080", "--save", "./events",
                         "--forward-to", "http://127.0.0.1:3000/hook", "--secret-file",
                         "%d/webhook-secret-1", "--optout-keywords", "STOP,BERHENTI"]
    assert f"LoadCredential=webhook-secret-1:{secret_file}" in unit
    assert "--print-systemd-unit" not in unit
    assert "WorkingDirectory=" in unit and "Restart=on-failure" in unit
    # the same state (opt-out list, outbox) and settings as the shell that printed it
    assert f"Environment=CLOUDCHAT_STATE_DIR={wenv['CLOUDCHAT_STATE_DIR']}" in unit
    assert f"Environment=CLOUDCHAT_CONFIG_DIR={wenv['CLOUDCHAT_CONFIG_DIR']}" in unit


def test_print_systemd_unit_with_the_secret_in_the_environment_uses_a_credential(wenv):
    proc = run_cli("webhook", "listen", "--print-systemd-unit", env=wenv)
    assert proc.returncode == 0 and SECRET not in proc.stdout
    assert "LoadCredential=webhook-secret:/etc/cloudchat/webhook-secret" in proc.stdout
    assert "Environment=CLOUDCHAT_WEBHOOK_SECRET_FILE=%d/webhook-secret" in proc.stdout


@pytest.mark.e2e
def test_print_systemd_unit_passes_systemd_analyze_verify(tmp_path, wenv):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    proc = run_cli("webhook", "listen", "--path", "/hook 100%", "--save", str(tmp_path / "ev"),
                   "--secret-file", str(secret_file), "--print-systemd-unit", env=wenv)
    unit = tmp_path / "cloudchat-listen.service"
    unit.write_text(proc.stdout)
    check = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                           timeout=60)
    problems = [line for line in (check.stdout + check.stderr).splitlines()
                if "cloudchat-listen.service" in line]
    assert check.returncode == 0 and not problems, check.stdout + check.stderr


@pytest.mark.e2e
def test_replay_skips_an_unreadable_file_says_so_and_exits_1(tmp_path, wenv, listeners, apps):
    events_dir = saved_dir(tmp_path, listeners, ["evt_ok"])
    (events_dir / "garbage.json").write_text("{not json\n")
    app = apps()
    done = run_cli("webhook", "replay", str(events_dir), "--to", app.url, env=wenv)
    assert done.returncode == 1 and "garbage.json is not a complete saved event" in done.stderr
    assert [g["id"] for g in app.received(1)] == ["evt_ok"]
    bad = run_cli("webhook", "replay", str(events_dir), "--to", app.url, "--since", "soonish",
                  env=wenv)
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def test_a_damaged_queue_file_is_a_clear_error_and_the_events_are_untouched(tmp_path, wenv):
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    (events_dir / "forward.sqlite").write_bytes(b"this is not a database" * 100)
    proc = run_cli("webhook", "listen", "--port", "0", "--save", str(events_dir),
                   "--forward-to", "http://127.0.0.1:9/hook", env=wenv)
    assert proc.returncode == 1 and "forward queue" in proc.stderr
    assert "Traceback" not in proc.stderr and "events themselves are untouched" in proc.stderr


@pytest.mark.e2e
def test_a_non_ascii_header_value_is_forwarded_and_does_not_wedge_the_queue(tmp_path, listeners,
                                                                           apps):
    app = apps()
    lis = listeners("--save", str(tmp_path / "events"), "--forward-to", app.url)
    body = event_body("evt_latin1")
    response = httpx.post(lis.url, content=body, timeout=10, headers={
        "X-CloudChat-Signature": sign(SECRET, body), "User-Agent": "CloudChat caf\xe9".encode(
            "latin-1"), "X-CloudChat-Event": "message.received"})
    assert response.status_code == 200
    post_all(lis, ["evt_after_latin1"])
    got = app.received(2)
    assert [g["id"] for g in got] == ["evt_latin1", "evt_after_latin1"]
    assert all(g["valid"] for g in got) and got[0]["event_header"] == "message.received"
