"""End to end: `cloudchat broadcast` against the sandbox — accounting, crashes, resume."""

import csv
import random
import signal
import subprocess
from collections import Counter

import pytest

from .conftest import TEST_KEY, cloudchat_exe, run_cli

TEMPLATE = "Halo {name}, pesanan {order_id} sudah dikirim"


def make_csv(tmp_path, n, *, name="customers.csv", bad_rows=(), delimiter=","):
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(["to", "name", "order_id"])
        for i in range(n):
            to = "0812" if i in bad_rows else f"62812{i:06d}1"
            writer.writerow([to, f"Pelanggan {i}", f"ORD-{i}"])
    return path


def read_report(path):
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def bc_env(env, box, **extra):
    return {**env, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_RATE_LIMIT": "1000", "CLOUDCHAT_RATE_WINDOW": "1",
            "CLOUDCHAT_RATE_MARGIN": "0", **extra}


def accepted_texts(box):
    return Counter(r["request"]["text"] for r in box.records() if r["status"] == 201)


def test_report_matches_sandbox_record(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = make_csv(tmp_path, 25, bad_rows={7})
    report = tmp_path / "report.csv"
    proc = run_cli("broadcast", str(path), "--template", TEMPLATE, "--skip-invalid", "--yes",
                   "--report", str(report), env=bc_env(env, box))
    assert proc.returncode == 0, proc.stderr
    rows = read_report(report)
    assert len(rows) == 25
    by_id = {r["id"]: r for r in box.records() if r["status"] == 201}
    sent = [r for r in rows if r["status"] == "sent"]
    assert len(sent) == 24 and len(by_id) == 24
    for row in sent:
        record = by_id[row["message_id"]]
        i = int(row["row"]) - 2
        assert record["request"]["to"] == row["to"] == f"62812{i:06d}1"
        assert record["request"]["text"] == TEMPLATE.format(name=f"Pelanggan {i}",
                                                            order_id=f"ORD-{i}")
    (invalid,) = [r for r in rows if r["status"] == "invalid"]
    assert invalid["row"] == "9" and "local number" in invalid["error"]


def test_failures_are_retried_or_reported_never_lost(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "--fail-rate", "0.3",
                          "--seed", "3", "-q")
    path = make_csv(tmp_path, 30)
    report = tmp_path / "report.csv"
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE, "--yes", "--report", str(report),
                   env=bc_env(env, box, CLOUDCHAT_MAX_RETRIES="1"))
    rows = read_report(report)
    statuses = Counter(r["status"] for r in rows)
    assert statuses["sent"] + statuses["failed"] == 30
    assert statuses["failed"] > 0  # with 1 retry at 30 % some rows fail twice (seed 3)
    assert proc.returncode == 8 and "--retry-failed" in proc.stderr
    # The sandbox accepted exactly the rows reported sent, each once.
    assert sorted(accepted_texts(box).values()) == [1] * statuses["sent"]
    again = run_cli("broadcast", str(path), "-t", TEMPLATE, "--yes", "--retry-failed",
                    "--report", str(report), env=bc_env(env, box, CLOUDCHAT_MAX_RETRIES="8"))
    assert again.returncode == 0, again.stderr
    assert Counter(r["status"] for r in read_report(report)) == {"sent": 30}
    assert sorted(accepted_texts(box).values()) == [1] * 30


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_then_resume_delivers_each_row_once(tmp_path, env, sandbox_factory, seed):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "--latency", "0.05")
    path = make_csv(tmp_path, 40)
    cenv = bc_env(env, box)
    args = [cloudchat_exe(), "broadcast", str(path), "-t", TEMPLATE, "--yes", "--concurrency", "4"]
    kill_after = random.Random(seed).randint(1, 35)
    proc = subprocess.Popen(args, env=cenv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(kill_after):  # each accepted message is one line from the sandbox
        assert box.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report = tmp_path / "report.csv"
    resumed = run_cli(*args[1:], "--report", str(report), env=cenv)
    rows = {r["row"]: r for r in read_report(report)}
    delivered = accepted_texts(box)
    assert len(rows) == 40
    for number, row in rows.items():
        i = int(number) - 2
        text = TEMPLATE.format(name=f"Pelanggan {i}", order_id=f"ORD-{i}")
        if row["status"] == "sent":
            assert delivered[text] == 1, (number, delivered[text])
        else:
            assert row["status"] == "unknown" and delivered[text] <= 1
    assert resumed.returncode in (0, 8)
    assert max(delivered.values()) == 1


def _sigterm_midway(tmp_path, env, box, sig):
    path = make_csv(tmp_path, 50)
    report = tmp_path / "report.csv"
    cenv = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="5", CLOUDCHAT_RATE_WINDOW="60")
    proc = subprocess.Popen(
        [cloudchat_exe(), "broadcast", str(path), "-t", TEMPLATE, "--yes", "--report",
         str(report), "--spacing", "burst"],
        env=cenv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    for _ in range(5):
        box.readline()
    proc.send_signal(sig)  # it is now waiting for the rate limit
    out, err = proc.communicate(timeout=30)
    return proc, err, report, cenv, path


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_state_and_prints_resume_command(tmp_path, env, sandbox_factory, sig):
    box = sandbox_factory()
    proc, err, report, cenv, path = _sigterm_midway(tmp_path, env, box, sig)
    assert proc.returncode == 130, err
    assert "resume with: cloudchat broadcast" in err and str(path) in err
    statuses = Counter(r["status"] for r in read_report(report))
    assert statuses == {"sent": 5, "pending": 45}
    status = run_cli("broadcast", "status", "--json", env=cenv)
    (item,) = __import__("json").loads(status.stdout)
    assert (item["sent"], item["pending"]) == (5, 45)


def test_no_tty_requires_yes(tmp_path, env, sandbox):
    path = make_csv(tmp_path, 3)
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE,
                   env={**env, "CLOUDCHAT_BASE_URL": sandbox.base_url,
                        "CLOUDCHAT_API_KEY": TEST_KEY})
    assert proc.returncode == 2 and "--yes" in proc.stderr
    assert sandbox.records() == []


@pytest.mark.parametrize(("template", "message"), [
    ("Halo {nama}", "no such column"),
    ("Halo {name.__class__}", "attribute or index access"),
    ("Halo {name:>999999999}", "format spec"),
    ("Halo {name", "template error"),
])
def test_template_errors_stop_before_any_request(tmp_path, env, sandbox, template, message):
    path = make_csv(tmp_path, 3)
    proc = run_cli("broadcast", str(path), "-t", template, "--yes",
                   env={**env, "CLOUDCHAT_BASE_URL": sandbox.base_url,
                        "CLOUDCHAT_API_KEY": TEST_KEY})
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sandbox.records() == []


def test_invalid_rows_stop_with_row_numbers(tmp_path, env, sandbox):
    path = make_csv(tmp_path, 30, bad_rows=set(range(0, 30, 2)))
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE, "--yes",
                   env={**env, "CLOUDCHAT_BASE_URL": sandbox.base_url,
                        "CLOUDCHAT_API_KEY": TEST_KEY})
    assert proc.returncode == 2
    assert "row 2, column 'to'" in proc.stderr and "15 invalid row(s)" in proc.stderr
    assert sandbox.records() == []


def test_semicolon_csv_and_dry_run_preview(tmp_path, env):
    path = make_csv(tmp_path, 4, delimiter=";")
    proc = run_cli("--sandbox", "broadcast", str(path), "-t", TEMPLATE, "--dry-run",
                   "--preview", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Halo Pelanggan 0, pesanan ORD-0 sudah dikirim" in proc.stdout
    assert "Pelanggan 2" not in proc.stdout
    assert "Plan: 4 rows: 4 valid (whatsapp 4)" in proc.stderr and "nothing was sent" in proc.stderr


@pytest.mark.e2e
def test_changed_csv_with_unfinished_journal_is_refused(tmp_path, env, sandbox_factory):
    box = sandbox_factory()
    proc, err, report, cenv, path = _sigterm_midway(tmp_path, env, box, signal.SIGTERM)
    with path.open("a") as fh:
        fh.write("6281299999999,Baru,ORD-X\n")
    again = run_cli("broadcast", str(path), "-t", TEMPLATE, "--yes", env=cenv)
    assert again.returncode == 2 and "the CSV file changed" in again.stderr
    assert "5 rows sent" in again.stderr


def test_rerun_of_finished_broadcast_sends_nothing(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = make_csv(tmp_path, 5)
    cenv = bc_env(env, box)
    assert run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", env=cenv).returncode == 0
    again = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "-q", env=cenv)
    # One line even with --quiet: a recurring job without --again must not do nothing silently.
    assert again.returncode == 0, again.stderr
    assert again.stderr.startswith("already sent on ") and again.stderr.count("\n") == 1
    assert "add --again to send it again" in again.stderr
    assert len(box.records()) == 5


def test_bad_key_stops_the_run_exit_3_rows_stay_pending(tmp_path, env, sandbox):
    path = make_csv(tmp_path, 5)
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "--json",
                   env={**env, "CLOUDCHAT_BASE_URL": sandbox.base_url,
                        "CLOUDCHAT_API_KEY": "sk_live_not_accepted_here"})
    assert proc.returncode == 3 and "resume with:" in proc.stderr
    counts = __import__("json").loads(proc.stdout)
    assert counts["sent"] == 0 and counts["pending"] == 5


def test_empty_and_directory_inputs_exit_2(tmp_path, env):
    (tmp_path / "empty.csv").write_text("")
    for target, message in ((tmp_path / "empty.csv", "is empty"), (tmp_path, "is a directory")):
        proc = run_cli("--sandbox", "broadcast", str(target), "-t", "x", "-y", env=env)
        assert proc.returncode == 2 and message in proc.stderr


def test_options_template_file_to_column_delimiter_duplicates_and_logs(tmp_path, env,
                                                                       sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = tmp_path / "pipes.csv"
    path.write_text("phone|name\n6281234567891|Ani\n6281234567891|Ani\n6281234567892|Budi\n")
    template = tmp_path / "pesan.txt"
    template.write_text("Halo {name}, {{promo}} hari ini\n")
    cenv = bc_env(env, box)
    base = ["broadcast", str(path), "--template-file", str(template), "--to-column", "phone",
            "--delimiter", "|", "-y"]
    first = run_cli(*base, "--log-every", "1", env=cenv)
    assert first.returncode == 0, first.stderr
    assert "1 duplicate(s) skipped" in first.stderr
    assert "2/2: 2 sent" in first.stderr  # a plain log line per row without a TTY
    texts = sorted(r["request"]["text"] for r in box.records())  # 4 in flight: any order
    assert texts == ["Halo Ani, {promo} hari ini", "Halo Budi, {promo} hari ini"]
    # A second journal of the same CSV still sees what the first sent: --again resends.
    quiet = run_cli(*base, "--allow-duplicates", "--again", "--journal", str(tmp_path / "j2"),
                    "-q", env=cenv)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert len(box.records()) == 5  # all three rows, the duplicate included


def test_retry_unknown_resends_rows_whose_outcome_was_unknown(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--drop-rate", "1", "-q")  # every request: read, then hung up on
    path = make_csv(tmp_path, 2)
    journal = tmp_path / "j.sqlite3"
    args = ["broadcast", str(path), "-t", TEMPLATE, "-y", "--journal", str(journal)]
    assert run_cli(*args, env=bc_env(env, box)).returncode == 8
    box2 = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    again = run_cli(*args, "--retry-unknown", env=bc_env(env, box2))
    assert again.returncode == 0 and "Resending 2 unknown row(s)" in again.stderr
    assert len(box2.records()) == 2


def test_status_of_a_csv_shows_that_broadcasts_runs(tmp_path, env, sandbox_factory):
    """`broadcast status d.csv` said "cannot open the broadcast journal … is the disk full?"."""
    box = sandbox_factory()
    cenv = bc_env(env, box)
    path = make_csv(tmp_path, 2, name="d.csv")
    other = make_csv(tmp_path, 1, name="other.csv")
    never = make_csv(tmp_path, 1, name="never.csv")
    for csv_path in (path, other):
        sent = run_cli("broadcast", str(csv_path), "-t", TEMPLATE, "--yes", env=cenv)
        assert sent.returncode == 0, sent.stderr
    again = run_cli("broadcast", str(path), "-t", TEMPLATE, "--yes", "--again", env=cenv)
    assert again.returncode == 0, again.stderr  # the first run is archived: two runs of d.csv
    shown = run_cli("broadcast", "status", str(path), "--json", env=cenv)
    assert shown.returncode == 0, shown.stderr
    items = __import__("json").loads(shown.stdout)
    assert [i["csv"] for i in items] == [str(path.resolve())] * 2
    assert sorted(i["state"] for i in items) == ["archived", "finished"]
    text = run_cli("broadcast", "status", str(path), env=cenv)
    assert text.returncode == 0 and "other.csv" not in text.stdout and "d.csv" in text.stdout
    missing = run_cli("broadcast", "status", str(never), env=cenv)
    assert missing.returncode == 2
    assert f"no broadcast of {never}" in missing.stderr and "disk full" not in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("case", ["same", "symlink", "missing_dir", "at_year_0", "at_year_10000",
                                  "at_between_overflow"])
@pytest.mark.parametrize("dry", [True, False])
def test_bad_report_or_at_is_refused_before_anything_is_sent(tmp_path, env, sandbox_factory,
                                                             case, dry):
    box = sandbox_factory()
    path = make_csv(tmp_path, 2, name="kontak.csv")
    before = path.read_bytes()
    extra = {
        "same": ["--report", str(path)],
        "symlink": ["--report", str(tmp_path / "link.csv")],
        "missing_dir": ["--report", str(tmp_path / "nope" / "r.csv")],
        "at_year_0": ["--at", "0001-01-01 00:00", "--tz", "Europe/Berlin"],
        "at_year_10000": ["--at", "9999-12-31 23:59", "--tz", "Etc/GMT+12"],
        "at_between_overflow": ["--at", "9999-12-31 23:00", "--between", "08:00-09:00",
                                "--tz", "Asia/Jakarta"],
    }[case]
    if case == "symlink":
        (tmp_path / "link.csv").symlink_to(path)
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE, *extra,
                   "--dry-run" if dry else "--yes", env=bc_env(env, box))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("Error: ")
    assert box.records() == []
    assert path.read_bytes() == before
