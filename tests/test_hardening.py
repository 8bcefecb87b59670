"""Hostile input, faults and secrets: clear errors, nothing lost, nothing leaked."""

import contextlib
import csv
import resource
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudchat_cli.services.broadcast.journal import Journal

from .conftest import TEST_KEY, run_cli

TEMPLATE = "Halo {name}, pesanan {order_id}"
WEBHOOK_SECRET = "whsec_hardening_secret_000111"


def make_csv(tmp_path, n, name="c.csv"):
    path = tmp_path / name
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["to", "name", "order_id"])
        for i in range(n):
            writer.writerow([f"62813{i:06d}1", f"P{i}", f"O{i}"])
    return path


def report_rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def one_line_error(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return lines and lines[0].startswith("Error:") and "Traceback" not in proc.stderr


# --- hostile input: exit 2, one line, no request -----------------------------------------------


@pytest.mark.parametrize("args", [
    ["62812\n34567890", "hi"],
    ["62812\x0734567890", "hi"],
    ["6" * 500, "hi"],
    ["@ali ce", "hi", "-c", "tg"],
    ["6281234567890", "hi", "-c", "sms"],
    ["6281234567890", "hi", "--field", "to=6289999999999"],
    ["6281234567890", "hi", "--field", "no-equals-sign"],
    ["6281234567890", "x" * 5000],
    ["6281234567890", "--media-url", "javascript:alert(1)"],
    ["6281234567890", "hi", "--type", "sticker"],
])
def test_hostile_send_input(cli, api_env, sandbox, args):
    proc = cli("send", *args, **api_env)
    assert proc.returncode == 2, proc.stderr
    assert one_line_error(proc)
    assert sandbox.records() == []


@pytest.mark.parametrize(("config_text", "message"), [
    ("[profiles.default\n", "not valid TOML"),
    ("[profiles.default]\nrate_limit = [1]\n", "single value"),
    ("[profiles.default]\ntimeout = -3\n", "timeout must be > 0"),
    ("profiles = 'x'\n", "must be a table"),
])
def test_hostile_config(cli, api_env, sandbox, tmp_path, config_text, message):
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.toml").write_text(config_text)
    proc = cli("send", "6281234567890", "hi", **api_env)
    assert proc.returncode == 2 and message in proc.stderr and one_line_error(proc)
    assert sandbox.records() == []


# --- server responses ------------------------------------------------------------------------


class Scripted(BaseHTTPRequestHandler):
    """A misbehaving API: the test sets `behaviour` on the server."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        kind = self.server.behaviour
        if kind == "drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):  # 200 s in all, if the client waited for it
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:  # the client hung up: how far the drip got
                    break
                self.server.dripped += 1
                time.sleep(0.2)
            self.server.drip_ended.set()
            return
        status, body, ctype = {
            "html200": (200, b"<html>ok</html>", "text/html"),
            "array200": (200, b"[1, 2, 3]", "application/json"),
            "huge500": (500, b"E" * (5 * 1024 * 1024), "text/plain"),
            "wrongtype": (400, b'{"message": "bad to"}', "text/plain"),
        }[kind]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


@pytest.fixture
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.daemon_threads = True
    server.dripped, server.drip_ended = 0, threading.Event()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                 daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def scripted_env(env, server, **extra):
    url = f"http://127.0.0.1:{server.server_address[1]}/api/public/v1"
    return {**env, "CLOUDCHAT_BASE_URL": url, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_MAX_RETRIES": "0", **extra}


@pytest.mark.parametrize(("behaviour", "code", "needle"), [
    ("html200", 7, "outcome unknown"),  # a 2xx without a message is not success
    ("array200", 7, "outcome unknown"),
    ("wrongtype", 2, "bad to"),
    ("huge500", 6, "non-JSON text/plain body: EEEE"),
])
def test_odd_server_responses(env, scripted, behaviour, code, needle):
    scripted.behaviour = behaviour
    proc = run_cli("send", "6281234567890", "hi", env=scripted_env(env, scripted))
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stdout + proc.stderr
    assert len(proc.stderr) < 1000 and "Traceback" not in proc.stderr


def test_slow_drip_response_times_out(env, scripted):
    scripted.behaviour = "drip"
    proc = run_cli("send", "6281234567890", "hi",
                   env=scripted_env(env, scripted, CLOUDCHAT_TIMEOUT="1"))
    assert proc.returncode == 7 and "outcome unknown" in proc.stderr
    # the client hung up mid-body: the timeout held though bytes kept coming (counted, not timed)
    assert scripted.drip_ended.wait(30) and 0 < scripted.dripped < 1000


# --- faults during a broadcast ----------------------------------------------------------------


def bc_env(env, box, **extra):
    return {**env, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_RATE_MARGIN": "0", **extra}


def test_broadcast_under_500s_and_429_storm_accounts_exactly(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--fail-rate", "0.1", "--seed", "11", "--rate-limit", "10",
                          "--rate-window", "2", "-q")
    path = make_csv(tmp_path, 40)
    report = tmp_path / "report.csv"
    # The client believes in a looser limit than the server enforces: a 429 storm.
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "--report", str(report),
                   "--spacing", "burst",
                   env=bc_env(env, box, CLOUDCHAT_RATE_LIMIT="40", CLOUDCHAT_RATE_WINDOW="2",
                              CLOUDCHAT_MAX_RETRIES="10"), timeout=180)
    records = box.records()
    assert Counter(r["status"] for r in records)[429] > 0
    assert "pacing evenly" in proc.stderr
    # the likely causes, not a "stricter server": the key is used where this limiter cannot see
    said = " ".join(proc.stderr.split())  # however the terminal width wrapped it
    assert "another machine, or the App's own backend" in said
    assert "only knows the cloudchat processes on this machine" in said
    assert "rate_store" in said  # the way to share the window across machines
    assert "stricter" not in said
    rows = report_rows(report)
    accepted = {r["id"]: r for r in records if r["status"] == 201}
    sent = [r for r in rows if r["status"] == "sent"]
    assert len(sent) == len(accepted)  # exact: no row lost, none sent twice
    for row in sent:
        assert accepted[row["message_id"]]["request"]["to"] == row["to"]
    assert {r["status"] for r in rows} <= {"sent", "failed"}
    assert proc.returncode == (0 if len(sent) == 40 else 8)


def test_dropped_connections_become_unknown_never_resent(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--drop-rate", "0.2", "--seed", "4", "--rate-limit", "1000",
                          "--rate-window", "1", "-q")
    path = make_csv(tmp_path, 30)
    report = tmp_path / "report.csv"
    cenv = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="1000", CLOUDCHAT_RATE_WINDOW="1")
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "--report", str(report),
                   env=cenv)
    assert proc.returncode == 8
    rows = {r["to"]: r for r in report_rows(report)}
    dropped = {r["request"]["to"] for r in box.records() if r.get("dropped")}
    unknown = {to for to, r in rows.items() if r["status"] == "unknown"}
    assert unknown == dropped and unknown
    again = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", env=cenv)
    assert again.returncode == 8  # still unknown: not resent without --retry-unknown
    assert len(box.records()) == 30


def test_unusable_state_dir_fails_before_sending(env, sandbox, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = run_cli("send", "6281234567890", "hi",
                   env={**env, "CLOUDCHAT_BASE_URL": sandbox.base_url,
                        "CLOUDCHAT_API_KEY": TEST_KEY, "CLOUDCHAT_STATE_DIR": str(blocker / "s")})
    assert proc.returncode == 1 and "rate-limit state" in proc.stderr and one_line_error(proc)
    assert sandbox.records() == []


@pytest.mark.e2e
def test_disk_full_mid_broadcast_stops_cleanly(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = make_csv(tmp_path, 200)
    journal = tmp_path / "journal.sqlite3"
    cenv = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="1000", CLOUDCHAT_RATE_WINDOW="1")
    args = ["broadcast", str(path), "-t", TEMPLATE, "-y", "--journal", str(journal)]
    import subprocess

    from .conftest import cloudchat_exe

    limit = 256 * 1024  # every file the process writes stops growing here: a full disk

    def full_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([cloudchat_exe(), *args], env=cenv, capture_output=True, text=True,
                          preexec_fn=full_disk, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "journal" in proc.stderr
    jr = Journal(journal)
    assert jr.check() == "ok"  # never a corrupted journal
    counts = jr.counts()
    jr.close()
    accepted = [r for r in box.records() if r["status"] == 201]
    assert 0 < counts["sent"] <= len(accepted) <= counts["sent"] + counts["sending"]
    resumed = run_cli(*args, env=cenv)
    assert resumed.returncode in (0, 8)
    delivered = Counter(r["request"]["to"] for r in box.records() if r["status"] == 201)
    assert max(delivered.values()) == 1 and len(delivered) >= 199


# --- secrets ---------------------------------------------------------------------------------


def test_no_secret_anywhere_after_a_full_run(tmp_path, env, sandbox_factory):
    wenv = {**env, "CLOUDCHAT_WEBHOOK_SECRET": WEBHOOK_SECRET}
    keyfile = tmp_path / "key"
    keyfile.write_text(TEST_KEY)
    keyfile.chmod(0o600)
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", env=wenv)
    cenv = {**wenv, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY_FILE": str(keyfile),
            "CLOUDCHAT_RATE_LIMIT": "1000", "CLOUDCHAT_RATE_WINDOW": "1"}
    outputs = []
    outputs.append(run_cli("--debug", "config", "set", "timeout", "9", env=cenv))
    outputs.append(run_cli("--debug", "send", "6281234567890", "hi", env=cenv))
    outputs.append(run_cli("--debug", "send", "6281234567890", "hi", "--json", env=cenv))
    outputs.append(run_cli("--debug", "config", "show", env=cenv))
    outputs.append(run_cli("--debug", "config", "doctor", env=cenv))
    path = make_csv(tmp_path, 5)
    outputs.append(run_cli("--debug", "broadcast", str(path), "-t", TEMPLATE, "-y", "--report",
                           str(tmp_path / "report.csv"), env=cenv))
    body = b'{"event":"message.received","id":"evt_s","data":{"text":"x"}}'
    (tmp_path / "body.json").write_bytes(body)
    sig = run_cli("webhook", "sign", str(tmp_path / "body.json"), env=cenv)
    outputs.append(sig)
    outputs.append(run_cli("--debug", "webhook", "verify", str(tmp_path / "body.json"), "-s",
                           sig.stdout.strip(), env=cenv))
    outputs.append(run_cli("--debug", "webhook", "verify", str(tmp_path / "body.json"), "-s",
                           "0" * 64, env=cenv))
    outputs.append(run_cli("--debug", "send", "6281234567890", "hi", env={
        **cenv, "CLOUDCHAT_API_KEY_FILE": "", "CLOUDCHAT_API_KEY": "sk_live_wrongwrongwrong9"}))
    assert [o.returncode for o in outputs] == [0, 0, 0, 0, 0, 0, 0, 0, 1, 3]
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != keyfile]
    text += "\n".join(p.read_bytes().decode("latin-1") for p in files)
    for secret in (TEST_KEY, WEBHOOK_SECRET, "sk_live_wrongwrongwrong9"):
        assert secret not in text, secret
    for root in (tmp_path / "state", tmp_path / "config"):
        for p in [root, *root.rglob("*")]:
            mode = p.stat().st_mode & 0o777
            assert mode & 0o077 == 0, (p, oct(mode))


def test_user_directories_are_never_chmodded(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    Journal(shared / "j.sqlite3").close()
    assert shared.stat().st_mode & 0o777 == 0o755
    Journal(shared / "new" / "deeper" / "j.sqlite3").close()
    assert (shared / "new").stat().st_mode & 0o777 == 0o700
