"""End to end: broadcasts over days — history across runs, --again, declined runs, discard, status.

Real `cloudchat broadcast` processes against the real sandbox; the sandbox's record (requests per
recipient and text) is the ground truth.
"""

import csv
import json
import os
import pty
import signal
import sqlite3
import subprocess
from collections import Counter

import pytest

from cloudchat_cli.services.broadcast.journal import VERSION

from .conftest import cloudchat_exe, read_terminal, run_cli
from .test_e2e_broadcast import TEMPLATE, bc_env, make_csv


def sent_to(box):
    return Counter(r["request"]["to"] for r in box.records() if r["status"] == 201)


def to(i):
    return f"62812{i:06d}1"


def fix_rows(path, fixes):
    """Change the 'to' of some rows (0-based data row → new number), as an operator would."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    for i, number in fixes.items():
        rows[i + 1][0] = number
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def bc(path, cenv, *extra, template=TEMPLATE):
    return run_cli("broadcast", str(path), "-t", template, *extra, env=cenv)


@pytest.fixture
def box(sandbox_factory):
    return sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")


def test_fix_and_rerun_sends_only_the_new_rows_and_dry_run_says_so(tmp_path, env, box):
    path = make_csv(tmp_path, 12, bad_rows={3, 7})
    cenv = bc_env(env, box)
    first = bc(path, cenv, "--skip-invalid", "-y")
    assert first.returncode == 0, first.stderr
    assert len(sent_to(box)) == 10
    fix_rows(path, {3: to(3), 7: to(7)})  # the operator corrects two numbers
    dry = bc(path, cenv, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "10 already received this exact message on " in dry.stderr
    assert "— skipped; 2 new row(s) will be sent" in dry.stderr
    assert len(box.records()) == 10  # the dry run sent nothing
    second = bc(path, cenv, "-y", "--json")
    assert second.returncode == 0, second.stderr
    assert "10 already received this exact message on " in second.stderr
    counts = json.loads(second.stdout)
    assert (counts["sent"], counts["already_sent"], counts["pending"]) == (2, 10, 0)
    got = sent_to(box)
    assert len(got) == 12 and set(got.values()) == {1}  # nobody got it twice


def test_again_resends_and_the_plan_says_so(tmp_path, env, box):
    path = make_csv(tmp_path, 5)
    cenv = bc_env(env, box)
    assert bc(path, cenv, "-y").returncode == 0
    quiet = bc(path, cenv, "-y", "-q")
    assert quiet.returncode == 0 and "nothing to do; add --again" in quiet.stderr
    assert len(box.records()) == 5
    again = bc(path, cenv, "-y", "--again")
    assert again.returncode == 0, again.stderr
    assert "--again: 5 already received this exact message" in again.stderr
    assert "will receive it again" in again.stderr
    assert set(sent_to(box).values()) == {2}
    # The next day's job, the same again: one more each, never more.
    assert bc(path, cenv, "-y", "--again", "-q").returncode == 0
    assert set(sent_to(box).values()) == {3}


def test_a_changed_template_is_a_new_message(tmp_path, env, box):
    path = make_csv(tmp_path, 4)
    cenv = bc_env(env, box)
    assert bc(path, cenv, "-y").returncode == 0
    other = bc(path, cenv, "-y", template="Promo untuk {name}")
    assert other.returncode == 0, other.stderr
    assert "already received" not in other.stderr
    assert set(sent_to(box).values()) == {2}
    texts = Counter(r["request"]["text"].split(" ")[0] for r in box.records())
    assert texts == {"Halo": 4, "Promo": 4}


def test_archived_history_still_protects_even_if_the_history_file_is_lost(tmp_path, env, box):
    path = make_csv(tmp_path, 6)
    cenv = bc_env(env, box)
    assert bc(path, cenv, "-y").returncode == 0  # run 1: rows 0-5
    fix_rows(path, {0: to(100)})
    assert bc(path, cenv, "-y").returncode == 0  # run 2: archives run 1, sends to(100) only
    broadcasts = tmp_path / "state" / "broadcasts"
    assert len(list(broadcasts.glob("*.done-*.sqlite3"))) == 1
    fix_rows(path, {0: to(0), 1: to(101)})  # row 0 back to its run-1 number
    for leftover in (broadcasts / "history").iterdir():
        leftover.unlink()  # the history is a cache: rebuilt from the journals on disk
    third = bc(path, cenv, "-y", "--json")
    assert third.returncode == 0, third.stderr
    counts = json.loads(third.stdout)
    assert (counts["sent"], counts["already_sent"]) == (1, 5)
    got = sent_to(box)
    assert got[to(0)] == 1 and got[to(101)] == 1 and set(got.values()) == {1}


def test_another_journal_of_the_same_csv_is_protected_too(tmp_path, env, box):
    path = make_csv(tmp_path, 3)
    cenv = bc_env(env, box)
    assert bc(path, cenv, "-y", "--journal", str(tmp_path / "mine.sqlite3")).returncode == 0
    other = bc(path, cenv, "-y")
    assert other.returncode == 0 and "all 3 row(s) already received" in other.stderr
    assert len(box.records()) == 3


def _no_tty_decline(path, cenv):
    proc = bc(path, cenv)
    assert proc.returncode == 2 and "without a terminal to confirm" in proc.stderr
    return proc


def test_declined_without_tty_leaves_nothing_and_an_edited_csv_then_runs(tmp_path, env, box):
    path = make_csv(tmp_path, 5)
    cenv = bc_env(env, box)
    dry = bc(path, cenv, "--dry-run")
    assert dry.returncode == 0
    _no_tty_decline(path, cenv)
    assert list((tmp_path / "state" / "broadcasts").glob("*.sqlite3")) == []
    with path.open("a") as fh:
        fh.write(f"{to(50)},Baru,ORD-50\n")
    run = bc(path, cenv, "-y")
    assert run.returncode == 0, run.stderr
    assert "unfinished" not in run.stderr
    assert len(sent_to(box)) == 6


@pytest.mark.e2e
@pytest.mark.parametrize("answer", [b"n\n", b"\x04"], ids=["no", "ctrl-d"])
def test_declined_at_the_prompt_leaves_nothing(tmp_path, env, box, answer):
    path = make_csv(tmp_path, 3)
    cenv = bc_env(env, box)
    master, slave = pty.openpty()
    proc = subprocess.Popen([cloudchat_exe(), "broadcast", str(path), "-t", TEMPLATE],
                            env=cenv, stdin=slave, stderr=slave, stdout=subprocess.PIPE)
    os.close(slave)
    os.write(master, answer)  # Ctrl-D: end of input is a no too (not click's "Aborted!")
    seen = read_terminal(master)
    proc.wait(30)
    os.close(master)
    assert b"Send 3 message(s)?" in seen
    assert proc.returncode == 130 and b"nothing was sent" in seen
    assert b"Aborted" not in seen
    assert list((tmp_path / "state" / "broadcasts").glob("*.sqlite3")) == []
    fix_rows(path, {0: to(70)})
    assert bc(path, cenv, "-y").returncode == 0
    assert len(box.records()) == 3


def _never_sent_journal(path, journal):
    """A journal as an older version left it after a declined confirmation: planned, unsent."""
    from cloudchat_cli.services.broadcast import plan as planning
    from cloudchat_cli.services.broadcast import service

    options = planning.BroadcastOptions(csv_path=path, template=TEMPLATE)
    info, tmpl = planning.prepare(options)
    opened = service.open_journal(journal, info, options, explicit=True)
    planning.run_preflight(info, tmpl, options, opened.journal)
    opened.journal.close()


def test_unfinished_journal_that_sent_nothing_is_replaced_without_complaint(tmp_path, env,
                                                                            box):
    path = make_csv(tmp_path, 4)
    journal = tmp_path / "j.sqlite3"
    _never_sent_journal(path, journal)
    with path.open("a") as fh:
        fh.write(f"{to(60)},Baru,ORD-60\n")
    run = bc(path, bc_env(env, box), "-y", "--journal", str(journal))
    assert run.returncode == 0, run.stderr
    assert "never confirmed" in run.stderr and "belongs to an unfinished" not in run.stderr
    assert len(sent_to(box)) == 5


def _interrupted_run(path, cenv, journal, box, sent):
    """Start a broadcast held by the rate limit after ``sent`` messages, then SIGTERM it.

    ``box`` must print a line per accepted message (not started with -q)."""
    proc = subprocess.Popen(
        [cloudchat_exe(), "broadcast", str(path), "-t", TEMPLATE, "-y", "--journal",
         str(journal), "--spacing", "burst"], env=cenv, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(sent):
        assert box.readline()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    return proc.returncode


@pytest.mark.e2e
def test_discard_archives_what_sent_and_deletes_what_did_not(tmp_path, env, sandbox_factory):
    box = sandbox_factory()  # loud: one line per accepted message
    path = make_csv(tmp_path, 10)
    cenv = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="3", CLOUDCHAT_RATE_WINDOW="60")
    run = subprocess.Popen([cloudchat_exe(), "broadcast", str(path), "-t", TEMPLATE, "-y",
                            "--spacing", "burst"],
                           env=cenv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    for _ in range(3):
        assert box.readline()
    busy = run_cli("broadcast", "discard", str(path), "--yes", env=cenv)  # still running
    assert busy.returncode == 2 and "already running" in busy.stderr
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=30)
    assert run.returncode == 130
    refused = run_cli("broadcast", "discard", str(path), env=cenv)  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "3 sent" in refused.stderr and "7 pending" in refused.stderr
    done = run_cli("broadcast", "discard", str(path), "--yes", env=cenv)
    assert done.returncode == 0, done.stderr
    assert "archived as" in done.stderr
    archive = done.stderr.rsplit("archived as ", 1)[1].strip()
    twice = run_cli("broadcast", "discard", "--journal", archive, "--yes", env=cenv)
    assert twice.returncode == 2 and "already archived" in twice.stderr
    status = json.loads(run_cli("broadcast", "status", "--json", env=cenv).stdout)
    assert [(s["state"], s["sent"], s["pending"]) for s in status] == [("archived", 3, 7)]
    # The CSV changes; the next run starts afresh and the 3 who got it are still protected.
    fix_rows(path, {9: to(99)})
    again = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "--json",
                    env=bc_env(env, box))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_sent"] == 3
    got = sent_to(box)
    assert len(got) == 10 and set(got.values()) == {1} and to(9) not in got


def test_discard_deletes_a_broadcast_that_sent_nothing(tmp_path, env):
    path = make_csv(tmp_path, 2)
    journal = tmp_path / "other.sqlite3"
    _never_sent_journal(path, journal)
    done = run_cli("broadcast", "discard", "--journal", str(journal), "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "deleted (nothing had been sent)" in done.stderr and "0 sent" in done.stderr
    assert not list(tmp_path.glob("other.sqlite3*"))  # journal, -wal, -shm and .lock
    missing = run_cli("broadcast", "discard", "--journal", str(journal), "--yes", env=env)
    assert missing.returncode == 2 and "nothing to discard" in missing.stderr
    both = run_cli("broadcast", "discard", str(path), "--journal", str(journal), env=env)
    assert both.returncode == 2 and "one of them" in both.stderr


def test_status_lists_each_run_with_dates_profile_template_and_state(tmp_path, env, box):
    path = make_csv(tmp_path, 3)
    cenv = bc_env(env, box)
    assert bc(path, cenv, "-y").returncode == 0
    assert bc(path, cenv, "-y", template="Lain {name}").returncode == 0
    items = json.loads(run_cli("broadcast", "status", "--json", env=cenv).stdout)
    assert [i["state"] for i in items] == ["finished", "archived"]
    for item in items:
        assert item["profile"] == "default" and item["csv"] == str(path.resolve())
        assert item["started_at"] <= item["finished_at"]
        assert item["sent"] == 3 and len(item["template_sha256"]) == 12
    assert items[0]["template_sha256"] != items[1]["template_sha256"]
    human = run_cli("broadcast", "status", env=cenv).stdout
    assert "finished" in human and "archived" in human and "profile default" in human


@pytest.mark.e2e
def test_a_journal_made_before_digests_resumes_and_protects(tmp_path, env, sandbox_factory):
    """Journal schema v0 (no rows.digest, user_version 0): resumed, migrated, and its sent
    rows still protect their recipients once it is archived."""
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1")
    path = make_csv(tmp_path, 6)
    journal = tmp_path / "old.sqlite3"
    cenv = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="2", CLOUDCHAT_RATE_WINDOW="60")
    assert _interrupted_run(path, cenv, journal, box, sent=2) == 130
    db = sqlite3.connect(journal)  # as the previous release wrote it
    db.execute("ALTER TABLE rows DROP COLUMN digest")
    db.execute("DELETE FROM meta WHERE k IN ('broadcast_key', 'profile', 'api', "
               "'template_sha256')")
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    fast = bc_env(env, box)
    resumed = bc(path, fast, "-y", "--journal", str(journal))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming: 2 sent" in resumed.stderr
    assert len(sent_to(box)) == 6 and set(sent_to(box).values()) == {1}
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION
    db.close()
    fix_rows(path, {0: to(200)})
    nxt = bc(path, fast, "-y", "--json")  # the default journal: history from old.sqlite3
    assert nxt.returncode == 0, nxt.stderr
    assert json.loads(nxt.stdout)["already_sent"] == 5
    assert len(sent_to(box)) == 7 and set(sent_to(box).values()) == {1}


def test_status_survives_a_damaged_journal_and_a_broadcast_that_sent_nothing(tmp_path, env,
                                                                             box):
    path = make_csv(tmp_path, 2)
    cenv = bc_env(env, box)
    for i in range(2):
        assert run_cli("optout", "add", to(i), env=env).returncode == 0
    first = bc(path, cenv, "-y", "-q")
    assert (first.returncode, first.stderr) == (0, "")  # all opted out: nothing to say
    second = bc(path, cenv, "-y", "-q")
    assert second.returncode == 0
    assert second.stderr == ("already run (nothing was sent): nothing to do; add --again to "
                             "send it again\n")
    broadcasts = tmp_path / "state" / "broadcasts"
    (broadcasts / "damaged.sqlite3").write_bytes(b"garbage" * 1000)
    status = run_cli("broadcast", "status", "--json", env=cenv)
    assert status.returncode == 0, status.stderr
    assert "damaged.sqlite3" in status.stderr and "Traceback" not in status.stderr
    (item,) = json.loads(status.stdout)
    assert (item["state"], item["opted_out"], item["sent"]) == ("finished", 2, 0)
    assert box.records() == []


@pytest.mark.e2e
def test_again_on_resume_sends_rows_the_interrupted_run_withheld(tmp_path, env,
                                                                 sandbox_factory):
    box = sandbox_factory()  # one line per accepted message
    path = make_csv(tmp_path, 3)
    fast = bc_env(env, box)
    assert bc(path, fast, "-y").returncode == 0
    for _ in range(3):
        assert box.readline()
    with path.open("a") as fh:
        for i in range(10, 16):
            fh.write(f"{to(i)},Baru {i},ORD-{i}\n")
    journal = tmp_path / "j.sqlite3"
    slow = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="2", CLOUDCHAT_RATE_WINDOW="60")
    # A separate journal of the same CSV: history withholds the 3, 2 of the 6 new go out.
    assert _interrupted_run(path, slow, journal, box, sent=2) == 130
    resumed = bc(path, fast, "-y", "--again", "--json", "--journal", str(journal))
    assert resumed.returncode == 0, resumed.stderr
    assert "Resending 3 already sent row(s)" in resumed.stderr
    counts = json.loads(resumed.stdout)
    assert (counts["sent"], counts["already_sent"]) == (9, 0)
    got = sent_to(box)
    assert [got[to(i)] for i in range(3)] == [2, 2, 2]
    assert [got[to(i)] for i in range(10, 16)] == [1] * 6
