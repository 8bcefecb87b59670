"""End to end: one broadcast per journal, a journal that disappears, reports that never understate.

Real `cloudchat broadcast` processes against the real sandbox; the sandbox's record (requests per
recipient) is the ground truth. Runs are made long with the sandbox's --latency and synchronised
on the lines the sandbox prints per accepted message, never on sleeps.
"""

import csv
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections import Counter

import pytest

from .conftest import cloudchat_exe, run_cli
from .test_e2e_broadcast import TEMPLATE, bc_env, make_csv, read_report


def per_recipient(box):
    """Messages that reached the sandbox whole, per recipient (a request cut off by kill -9
    is recorded too, as a framing error without a body)."""
    return Counter(r["request"]["to"] for r in box.records() if isinstance(r["request"], dict))


def start(args, env, **kw):
    return subprocess.Popen([cloudchat_exe(), *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.e2e
def test_two_runs_started_together_send_each_row_once(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "--latency", "0.3",
                          "-q")  # 80 rows, 4 in flight: the winner runs for 6 s at least
    path = make_csv(tmp_path, 80)
    cenv = bc_env(env, box)
    args = ["broadcast", str(path), "-t", TEMPLATE, "--yes"]
    runs = [start(args, cenv), start(args, cenv)]
    results = [(p.wait(60), p.stderr.read()) for p in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    (refused,) = [err for code, err in results if code == 2]
    winner = next(p for p, (code, _) in zip(runs, results, strict=True) if code == 0)
    assert f"PID {winner.pid}" in refused and "already running" in refused
    counts = per_recipient(box)
    assert len(counts) == 80 and set(counts.values()) == {1}  # was 156 requests for 80 rows
    for p in runs:
        p.stdout.close()
        p.stderr.close()


@pytest.mark.e2e
def test_second_run_refuses_at_once_while_status_still_works(tmp_path, env, sandbox_factory):
    box = sandbox_factory()
    path = make_csv(tmp_path, 40)
    journal = tmp_path / "j.sqlite3"
    cenv = bc_env(env, box)
    args = ["broadcast", str(path), "-t", TEMPLATE, "--yes", "--journal", str(journal),
            "--spacing", "burst"]
    # 5 per minute: after 5 messages the first run waits for the rate limit, still active.
    first = start(args, {**cenv, "CLOUDCHAT_RATE_LIMIT": "5", "CLOUDCHAT_RATE_WINDOW": "60"})
    for _ in range(5):
        assert box.readline()
    second = run_cli(*args, env=cenv)
    assert second.returncode == 2, second.stderr
    assert f"another broadcast (PID {first.pid}) is already running" in second.stderr
    assert "Traceback" not in second.stderr
    status = run_cli("broadcast", "status", str(journal), "--json", env=cenv)
    assert status.returncode == 0, status.stderr
    item = json.loads(status.stdout)
    assert (item["sent"], item["pending"], item["running_pid"]) == (5, 35, first.pid)
    human = run_cli("broadcast", "status", str(journal), env=cenv)
    assert f"running (PID {first.pid})" in human.stdout
    for suffix in ("", "-wal", "-shm"):  # the whole journal is private, not just the main file
        assert stat.S_IMODE(os.stat(f"{journal}{suffix}").st_mode) == 0o600, suffix
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert len(box.records()) == 5  # the refused run sent nothing
    last = run_cli(*args, env=cenv)  # the lock went with the first run
    assert last.returncode == 0, last.stderr
    counts = per_recipient(box)
    assert len(counts) == 40 and set(counts.values()) == {1}
    done = json.loads(run_cli("broadcast", "status", str(journal), "--json", env=cenv).stdout)
    assert done["running_pid"] is None and done["sent"] == 40


@pytest.mark.e2e
def test_kill_9_leaves_no_stale_lock(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "--latency", "0.1")
    path = make_csv(tmp_path, 30)
    cenv = bc_env(env, box)
    args = ["broadcast", str(path), "-t", TEMPLATE, "--yes"]
    first = start(args, cenv)
    for _ in range(3):
        assert box.readline()
    first.send_signal(signal.SIGKILL)
    first.communicate()
    report = tmp_path / "report.csv"
    again = run_cli(*args, "--report", str(report), env=cenv)
    assert again.returncode in (0, 8), again.stderr  # 8: rows in flight at the kill are unknown
    assert "already running" not in again.stderr and "Resuming" in again.stderr
    statuses = Counter(r["status"] for r in read_report(report))
    assert statuses["sent"] + statuses["unknown"] == 30 and statuses["pending"] == 0
    assert max(per_recipient(box).values()) == 1


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_journal_removed_or_replaced_mid_run_stops_sending(tmp_path, env, sandbox_factory, how):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "--latency", "0.1")
    path = make_csv(tmp_path, 60)
    journal = tmp_path / "j.sqlite3"
    report = tmp_path / "report.csv"
    cenv = bc_env(env, box)
    args = ["broadcast", str(path), "-t", TEMPLATE, "--yes", "--journal", str(journal)]
    run = start([*args, "--report", str(report)], cenv)
    for _ in range(3):
        assert box.readline()
    if how == "removed":
        journal.unlink()
    else:
        other = tmp_path / "other.sqlite3"
        other.write_bytes(b"")
        other.replace(journal)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    assert f"the journal {journal} was {how} while this broadcast was running" in err
    assert "stopped sending" in err
    rows = read_report(report)
    statuses = Counter(r["status"] for r in rows)
    sent_to = {r["to"] for r in rows if r["status"] == "sent"}
    counts = per_recipient(box)
    assert set(counts) == sent_to and set(counts.values()) == {1}  # report == server record
    assert statuses["pending"] > 0 and statuses["sent"] + statuses["pending"] == 60
    # This run's record was saved beside the journal: resuming from it sends only the rest.
    saved = re.search(r"saved as (\S+\.sqlite3)", err).group(1)
    resumed = run_cli(*args[:-1], saved, env=cenv)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming: {statuses['sent']} sent" in resumed.stderr
    counts = per_recipient(box)
    assert len(counts) == 60 and set(counts.values()) == {1}


@pytest.mark.e2e
def test_journal_write_failure_reports_rows_in_flight_as_unknown(tmp_path, env,
                                                                 sandbox_factory):
    """A full disk mid-run (RLIMIT_FSIZE): rows whose request went out are unknown, not pending."""
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = make_csv(tmp_path, 80)
    report = tmp_path / "report.csv"
    # The preflight fits in 300 kB; the journal's WAL outgrows it after a few rows. The limit is
    # set by a tiny exec wrapper (preexec_fn is unsafe with the sandbox's reader threads).
    small_disk = ("import os, resource, sys; "
                  "resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000)); "
                  "os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.run(
        [sys.executable, "-c", small_disk, cloudchat_exe(), "broadcast", str(path), "-t",
         TEMPLATE, "--yes", "--json", "--journal", str(tmp_path / "j.sqlite3"),
         "--report", str(report)],
        env=bc_env(env, box), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 1 and "journal" in proc.stderr and "failed" in proc.stderr
    rows = read_report(report)
    reached = per_recipient(box)
    assert reached  # some requests went out before the failure
    by_to = {r["to"]: r for r in rows}
    for to in reached:  # the server's record: nothing that reached it is reported pending
        assert by_to[to]["status"] in ("sent", "unknown"), by_to[to]
    statuses = Counter(r["status"] for r in rows)
    counts = json.loads(proc.stdout)
    assert {k: counts[k] for k in ("sent", "unknown", "pending")} == {
        k: statuses[k] for k in ("sent", "unknown", "pending")}
    assert statuses["pending"] == 80 - len(reached)
    assert statuses["unknown"] >= 1  # the row whose answer could not be recorded, at least
    assert re.search(rf"^unknown\s+{statuses['unknown']}$", proc.stderr, re.M)  # the summary
    assert "answer was not recorded" in by_to[next(
        r["to"] for r in rows if r["status"] == "unknown")]["error"]


def unescape(cell):
    return cell[1:] if cell.startswith("'") else cell


def test_report_cells_are_safe_in_a_spreadsheet_and_read_back(tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = tmp_path / "mixed.csv"
    recipients = ["+62 812-3456-7891", "@budi_toko", "-1001234567890", "=HYPERLINK(\"x\")",
                  "+62 8", "@", "'quoted"]
    channels = ["whatsapp", "telegram", "telegram", "whatsapp", "whatsapp", "telegram",
                "whatsapp"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["to", "channel", "name"])
        for to, channel in zip(recipients, channels, strict=True):
            writer.writerow([to, channel, "Ani"])
    report = tmp_path / "report.csv"
    proc = run_cli("broadcast", str(path), "-t", "Halo {name}", "--yes", "--skip-invalid",
                   "--report", str(report), env=bc_env(env, box))
    assert proc.returncode == 0, proc.stderr
    raw = report.read_text(encoding="utf-8")
    with report.open(newline="", encoding="utf-8") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    for cell in cells:  # no cell a spreadsheet would evaluate
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    rows = read_report(report)
    assert [r["status"] for r in rows] == ["sent", "sent", "sent", "invalid", "invalid",
                                           "invalid", "invalid"]
    # Recipients read back as the text sent to the API (and, for invalid rows, as typed),
    # once the one leading apostrophe that marks a neutralised cell is removed.
    shown = [r["recipient"][1:] if r["recipient"].startswith("'") else r["recipient"]
             for r in rows]
    assert shown == ["6281234567891", "@budi_toko", "-1001234567890", "=HYPERLINK(\"x\")",
                     "+62 8", "@", "'quoted"]
    assert rows[1]["recipient"] == "'@budi_toko" and rows[0]["recipient"] == "6281234567891"
    # the input's own column, as typed (neutralised the same way)
    assert [unescape(r["to"]) for r in rows] == recipients
    assert rows[0]["to"] == "'+62 812-3456-7891" and rows[0]["name"] == "Ani"
    sent_to = sorted(r["request"]["to"] for r in box.records())
    assert sent_to == sorted(["6281234567891", "@budi_toko", "-1001234567890"])
    assert "'=HYPERLINK" in raw
