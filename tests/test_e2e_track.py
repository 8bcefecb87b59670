"""``broadcast track`` end to end: the sandbox's real webhook sender → a live ``webhook listen
--save`` → ``track``, compared with what the sandbox says it did."""

from __future__ import annotations

import csv
import json
import os
import pty
import shutil
import signal
import sqlite3
import subprocess
import time

import httpx
import pytest

from cloudchat_cli.services.broadcast.journal import VERSION

from . import test_e2e_webhook
from .conftest import cloudchat_exe, read_terminal, run_cli
from .test_e2e_broadcast import TEMPLATE, bc_env
from .test_e2e_broadcast_history import _interrupted_run
from .test_tracking_unit import FIXTURES, Events

listener_factory = test_e2e_webhook.listener_factory  # fixture: live listeners (wenv: conftest)

SANDBOX_FAILURE = "recipient unreachable (sandbox: numbers ending in 9999)"


def write_csv(path, numbers):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["to", "name", "order_id"])
        for i, number in enumerate(numbers):
            writer.writerow([number, f"Pelanggan {i}", f"ORD-{i}"])
    return path


def messages(box) -> list[dict]:
    """The sandbox's own list of the messages it accepted (the ground truth)."""
    return httpx.get(box.base_url.split("/api/")[0] + "/_sandbox/messages", timeout=10
                     ).json()["messages"]


def track(path_or_journal, events, env, *args):
    target = (["--journal", str(path_or_journal)] if str(path_or_journal).endswith(".sqlite3")
              else [str(path_or_journal)])
    return run_cli("broadcast", "track", *target, "--events", str(events), *args, env=env)


@pytest.mark.e2e
def test_track_shows_exactly_what_the_sandbox_did(tmp_path, wenv, sandbox_factory,
                                                  listener_factory):
    events = tmp_path / "events"
    lis = listener_factory("--save", str(events))
    box = sandbox_factory("--webhook-url", lis.url, "--status-delay", "0.01", env=wenv)
    numbers = ["6281200000011", "6281200009999", "6281200000022", "6281200000033",
               "6281211119999", "6281200000044"]
    path = write_csv(tmp_path / "customers.csv", numbers)
    cenv = bc_env(wenv, box)
    sent = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "-q", env=cenv)
    assert sent.returncode == 0, sent.stderr
    # every status event the sandbox sends, saved: sent→delivered→read, or sent→failed
    for _ in range(4 * 3 + 2 * 2):
        assert lis.event()["status"] == "accepted"
    truth = {"messages": messages(box)}
    failing = {m["id"] for m in truth["messages"] if m["to"].endswith("9999")}
    assert len(truth["messages"]) == 6 and len(failing) == 2
    recorded = sorted(r["request"]["to"] for r in box.records() if r["status"] == 201)
    assert recorded == sorted(m["to"] for m in truth["messages"]) == sorted(numbers)

    got = track(path, events, cenv, "--json", "--report", str(tmp_path / "r.csv"))
    assert got.returncode == 0, got.stderr
    summary = json.loads(got.stdout)
    assert {k: summary[k] for k in ("accepted", "delivered", "read", "failed", "no_status")} \
        == {"accepted": 6, "delivered": 4, "read": 4, "failed": 2, "no_status": 0}
    assert summary["failure_reasons"] == [{"reason": SANDBOX_FAILURE, "count": 2}]
    assert summary["events"]["status_events"] == 16
    assert summary["times"]["sent_to_delivered"]["count"] == 4
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    by_id = {r["message_id"]: r for r in rows}
    assert set(by_id) == {m["id"] for m in truth["messages"]}
    for m in truth["messages"]:
        row = by_id[m["id"]]
        assert row["recipient"] == m["to"]
        if m["id"] in failing:
            assert (row["delivery"], row["delivery_error"]) == ("failed", SANDBOX_FAILURE)
            assert row["failed_at"] and not row["delivered_at"]
        else:
            assert row["delivery"] == "read" and row["sent_at"] <= row["delivered_at"] \
                <= row["read_at"]

    again = track(path, events, cenv)  # piped: plain lines; nothing new read
    assert again.returncode == 0 and "\x1b[" not in again.stdout
    assert again.stdout.splitlines()[:5] == [
        "accepted: 6", "delivered: 4 (66.7%)", "read: 4 (66.7%)", "failed: 2 (33.3%)",
        "no status yet: 0 (0.0%)"]
    assert f"failure reason: 2 × {SANDBOX_FAILURE}" in again.stdout
    journal = next((tmp_path / "state" / "broadcasts").glob("*.sqlite3"))
    db = sqlite3.connect(journal)
    assert db.execute("SELECT COUNT(*) FROM event_files").fetchone()[0] == 16
    db.close()


def trigger(url, env, mid, status, ts, event_id=None, *extra):
    sets = ["--set", f"data.message_id={mid}", "--set", f"data.status={status}",
            "--set", f"timestamp={ts}"]
    if event_id:
        sets += ["--set", f"id={event_id}"]
    proc = run_cli("webhook", "trigger", url, "-e", "message.status", "--no-retry", *sets,
                   *extra, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.e2e
def test_out_of_order_duplicates_other_broadcasts_corrupt_files_and_follow(
        tmp_path, wenv, sandbox_factory, listener_factory):
    events = tmp_path / "events"
    lis = listener_factory("--save", str(events))
    box = sandbox_factory()  # no webhooks: the events below are made by hand
    path = write_csv(tmp_path / "c.csv", ["6281200000011", "6281200000022", "6281200000033"])
    cenv = bc_env(wenv, box)
    assert run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "-q", env=cenv).returncode == 0
    by_to = {m["to"]: m["id"] for m in messages(box)}
    ids = [by_to["6281200000011"], by_to["6281200000022"], by_to["6281200000033"]]
    now = int(time.time())
    trigger(lis.url, wenv, ids[0], "read", now - 10)  # before its delivered
    trigger(lis.url, wenv, ids[0], "delivered", now - 40, "evt_dup")
    trigger(lis.url, wenv, ids[0], "delivered", now - 40, "evt_dup")  # a retry: same id
    trigger(lis.url, wenv, ids[0], "delivered", now - 30)  # the same status again, new id
    trigger(lis.url, wenv, ids[1], "failed", now - 20, None, "--set", "data.error=blocked")
    trigger(lis.url, wenv, ids[1], "delivered", now - 5)  # failed is final
    trigger(lis.url, wenv, "msg_of_another_broadcast", "delivered", now)
    (events / "broken.json").write_text('{"body": "{\\"event\\": \\"mess', encoding="utf-8")
    (events / "junk.json").write_text("not json at all\n", encoding="utf-8")
    for _ in range(6):
        assert lis.event()["status"] in ("accepted", "duplicate")

    got = track(path, events, cenv, "--json", "--report", str(tmp_path / "r.csv"))
    assert got.returncode == 0, got.stderr
    assert "junk.json: skipped, not JSON" in got.stderr and "broken.json" not in got.stderr
    s = json.loads(got.stdout)
    assert (s["read"], s["delivered"], s["failed"], s["no_status"]) == (1, 1, 1, 1)
    assert s["events"]["other_broadcasts"] == 1 and s["events"]["refused_files"] == 1
    assert s["failure_reasons"] == [{"reason": "blocked", "count": 1}]
    assert s["times"]["sent_to_delivered"]["count"] == 1
    assert s["times"]["delivered_to_read"] == {"count": 1, "median_s": 30.0, "p90_s": 30.0}
    rows = {r["message_id"]: r for r in csv.DictReader((tmp_path / "r.csv").open())}
    assert rows[ids[0]]["delivered_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime(now - 40))
    assert rows[ids[2]]["delivery"] == "no status yet"
    stale = track(path, events, cenv, "--stale", "0s")
    assert stale.returncode == 0 and "stale row 4: 6281200000033" in stale.stdout
    assert "junk.json" not in stale.stderr  # warned once: it has not changed

    # --follow: shows each change; Ctrl-C ends it with exit 0 and what it read saved
    follow = subprocess.Popen(
        [cloudchat_exe(), "broadcast", "track", str(path), "--events", str(events), "--follow",
         "--interval", "0.05"], env=cenv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    first = follow.stdout.readline()
    assert first.startswith("accepted 3, delivered 1, read 1, failed 1, no status yet 1")
    trigger(lis.url, wenv, ids[2], "delivered", now)
    assert follow.stdout.readline().startswith("accepted 3, delivered 2, read 1, failed 1, "
                                               "no status yet 0")
    follow.send_signal(signal.SIGINT)
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert "delivered: 2 (66.7%)" in out
    # ... and ends by itself once every message is read or failed
    follow = subprocess.Popen(
        [cloudchat_exe(), "broadcast", "track", str(path), "--events", str(events), "--follow",
         "--interval", "0.05", "--json"], env=cenv, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trigger(lis.url, wenv, ids[2], "read", now + 1)
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    assert json.loads(out)["read"] == 2


@pytest.mark.e2e
def test_a_journal_of_the_previous_version_is_tracked_and_still_resumes(tmp_path, wenv,
                                                                         sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1")
    path = write_csv(tmp_path / "c.csv", [f"62812000000{i}1" for i in range(5)])
    journal = tmp_path / "old.sqlite3"
    cenv = bc_env(wenv, box, CLOUDCHAT_RATE_LIMIT="2", CLOUDCHAT_RATE_WINDOW="60")
    assert _interrupted_run(path, cenv, journal, box, sent=2) == 130
    db = sqlite3.connect(journal)  # as the previous release left it: schema v1
    for table in ("delivery", "event_files", "unmatched", "tracking"):
        db.execute(f"DROP TABLE {table}")
    db.execute("DROP INDEX rows_by_message")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    ids = [r[0] for r in db.execute("SELECT message_id FROM rows WHERE state = 'sent'")]
    db.close()
    events = tmp_path / "events"
    store = Events(events)
    store.status(ids[0], "read", int(time.time()))
    got = track(journal, events, wenv, "--json")
    assert got.returncode == 0, got.stderr
    s = json.loads(got.stdout)
    assert (s["accepted"], s["read"], s["not_sent_yet"]) == (2, 1, 3)
    resumed = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "--journal", str(journal),
                      env=bc_env(wenv, box))
    assert resumed.returncode == 0 and "Resuming: 2 sent" in resumed.stderr
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    db.close()
    after = json.loads(track(journal, events, wenv, "--json").stdout)
    assert (after["accepted"], after["read"], after["no_status"]) == (5, 1, 4)


def test_track_usage_errors(tmp_path, env):
    events = tmp_path / "ev"
    events.mkdir()
    missing = run_cli("broadcast", "track", str(tmp_path / "x.csv"), "--events", str(events),
                      env=env)
    assert missing.returncode == 2 and "no broadcast of" in missing.stderr
    both = run_cli("broadcast", "track", "--events", str(events), env=env)
    assert both.returncode == 2 and "CSV file or --journal" in both.stderr
    (tmp_path / "j.sqlite3").write_text("not a database " * 200)
    bad = run_cli("broadcast", "track", "--journal", str(tmp_path / "j.sqlite3"),
                  "--events", str(events), env=env)
    assert bad.returncode == 2 and "not a broadcast journal" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.e2e
def test_follow_on_a_terminal_draws_the_funnel_and_ends_when_all_are_final(tmp_path, env):
    journal = tmp_path / "v1.sqlite3"  # a journal of the previous version, as it was shipped
    shutil.copy(FIXTURES / "journal-v1.sqlite3", journal)
    db = sqlite3.connect(journal)
    ids = [r[0] for r in db.execute("SELECT message_id FROM rows ORDER BY row")]
    db.close()
    store = Events(tmp_path / "events")
    for mid in ids[:3]:
        store.status(mid, "read", 1_800_000_000)
    store.status(ids[3], "failed", 1_800_000_000, "blocked")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [cloudchat_exe(), "broadcast", "track", "--journal", str(journal), "--events",
         str(tmp_path / "events"), "--follow", "--interval", "0.05"],
        env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    seen = read_terminal(master)
    proc.wait(30)
    os.close(master)
    text = seen.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "Delivery funnel: 4 accepted" in text and "█" in text and "75.0%" in text
    assert "blocked" in text and "\x1b[" in text  # colour on a terminal


def test_track_refuses_a_missing_events_directory_and_a_bad_stale(tmp_path, env):
    journal = tmp_path / "v1.sqlite3"
    shutil.copy(FIXTURES / "journal-v1.sqlite3", journal)
    gone = run_cli("broadcast", "track", "--journal", str(journal), "--events",
                   str(tmp_path / "nope"), env=env)
    assert gone.returncode == 2 and "no events directory" in gone.stderr
    bad = run_cli("broadcast", "track", "--journal", str(journal), "--events", str(tmp_path),
                  "--stale", "soon", env=env)
    assert bad.returncode == 2 and "--stale 'soon'" in bad.stderr
