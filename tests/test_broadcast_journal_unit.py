"""The journal's lock, its identity check, its file modes and the report's cells, in process."""

import csv
import io
import json
import os
import stat

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudchat_cli.core.http import ApiClient
from cloudchat_cli.services.broadcast import service
from cloudchat_cli.services.broadcast.journal import Journal, JournalError, JournalMoved
from cloudchat_cli.services.broadcast.lock import JournalBusy, JournalLock, holder, lock_path
from cloudchat_cli.services.broadcast.runner import Runner

PAYLOAD = json.dumps({"channel": "whatsapp", "to": "6281234567891", "type": "text", "text": "x"})


def journal_with_rows(path, n=5):
    journal = Journal(path)
    journal.add_rows([(r, "6281234567891", "whatsapp", PAYLOAD, "pending", None)
                      for r in range(2, 2 + n)], [None] * n)
    return journal


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def dead_pid():
    """A PID no process has (found without starting one: the fast lane starts no process)."""
    for pid in range(4_194_303, 1, -1):  # from Linux's highest PID down
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("every PID is taken")


# --- the lock -----------------------------------------------------------------------------------


def test_second_lock_is_refused_naming_the_holder_then_free_after_release(tmp_path):
    journal = tmp_path / "j.sqlite3"
    first = JournalLock.acquire(journal)
    assert mode(lock_path(journal)) == 0o600
    assert holder(journal) == os.getpid()
    with pytest.raises(JournalBusy, match=rf"another broadcast \(PID {os.getpid()}\)") as info:
        JournalLock.acquire(journal)
    assert info.value.exit_code == 2 and str(journal) in info.value.message
    first.release()
    assert holder(journal) is None and not lock_path(journal).exists()
    JournalLock.acquire(journal).release()


def test_a_dead_runs_lock_file_is_taken_over(tmp_path):
    journal = tmp_path / "j.sqlite3"
    lock_path(journal).write_text(f"{dead_pid()}\n")  # as `kill -9` leaves it
    assert holder(journal) is None
    lock = JournalLock.acquire(journal)
    assert lock_path(journal).read_text() == f"{os.getpid()}\n"
    lock.release()


def test_a_held_lock_naming_no_live_pid_is_refused_after_looking_again(tmp_path):
    import fcntl

    journal = tmp_path / "j.sqlite3"
    fd = os.open(lock_path(journal), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{dead_pid()}\n".encode())
    waits = []
    try:
        with pytest.raises(JournalBusy):
            JournalLock.acquire(journal, sleep=waits.append)
    finally:
        os.close(fd)
    assert len(waits) >= 10  # it looked again instead of naming a dead process at once


def test_journal_close_releases_its_lock(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    journal.hold(JournalLock.acquire(path))
    assert holder(path) == os.getpid()
    journal.close()
    assert holder(path) is None


# --- file modes ---------------------------------------------------------------------------------


def test_journal_wal_and_shm_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        journal = journal_with_rows(tmp_path / "j.sqlite3")
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{journal.path}{suffix}") == 0o600, suffix
        journal.close()
        legacy = tmp_path / "old.sqlite3"  # written by an earlier version: 0644 everywhere
        Journal(legacy).close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{legacy}{suffix}"):
                os.chmod(f"{legacy}{suffix}", 0o644)
        again = journal_with_rows(legacy)
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{legacy}{suffix}") == 0o600, suffix
        again.close()
    finally:
        os.umask(old)


# --- the journal's identity ---------------------------------------------------------------------


def test_verify_path_notices_removal_and_replacement(tmp_path):
    journal = journal_with_rows(tmp_path / "j.sqlite3")
    journal.verify_path()
    journal.path.rename(tmp_path / "elsewhere.sqlite3")
    with pytest.raises(JournalMoved, match="was removed while this broadcast was running"):
        journal.verify_path()
    (tmp_path / "j.sqlite3").write_bytes(b"")
    with pytest.raises(JournalMoved, match="was replaced"):
        journal.verify_path()
    journal.close()


def test_save_copy_keeps_every_row_and_never_overwrites(tmp_path):
    journal = journal_with_rows(tmp_path / "j.sqlite3")
    journal.mark(2, "sent", message_id="msg_1", http_status=201)
    journal.path.unlink()
    target = tmp_path / "saved.sqlite3"
    journal.save_copy(target)
    assert mode(target) == 0o600
    copy = Journal(target)
    assert copy.counts()["sent"] == 1 and copy.counts()["pending"] == 4
    copy.close()
    with pytest.raises(JournalError, match="cannot save the journal"):
        journal.save_copy(target)
    journal.close()


def test_runner_stops_before_sending_once_the_journal_is_gone(tmp_path):
    journal = journal_with_rows(tmp_path / "j.sqlite3", n=6)
    sent = []

    def handler(request):
        sent.append(json.loads(request.content))
        if len(sent) == 2:
            journal.path.unlink()  # removed while the run is active
        return httpx.Response(201, json={"id": f"msg_{len(sent)}", "status": "queued"})

    client = ApiClient("http://api.test", "sk_test_x", transport=httpx.MockTransport(handler))
    result = Runner(journal, client, concurrency=1).run()
    assert isinstance(result.fatal, JournalMoved) and result.fatal.how == "removed"
    assert len(sent) == 2
    counts = journal.counts()
    assert (counts["sent"], counts["pending"], counts["sending"]) == (2, 4, 0)
    journal.close()


def test_a_rate_limit_state_failure_before_the_request_leaves_the_row_pending(tmp_path):
    """The throttle's last write (a budget's "sent now") fails after the row was marked
    sending but before its request goes out: the row was certainly not sent."""
    from cloudchat_cli.core.errors import CloudChatError
    from cloudchat_cli.core.throttle import Budget, Throttle

    journal = journal_with_rows(tmp_path / "j.sqlite3", n=3)
    sent = []

    def handler(request):
        sent.append(json.loads(request.content))
        return httpx.Response(201, json={"id": f"msg_{len(sent)}", "status": "queued"})

    class FullDisk(Throttle):
        def sent(self):
            if len(sent) == 1:
                raise CloudChatError("the rate-limit state failed: disk I/O error")
            super().sent()

    throttle = FullDisk(100, 60, margin=0)
    throttle.budget = Budget("b1", 100, pace=0.001)
    client = ApiClient("http://api.test", "sk_test_x", transport=httpx.MockTransport(handler),
                       throttle=throttle)
    result = Runner(journal, client, concurrency=1).run()
    assert "disk I/O error" in result.fatal.message and len(sent) == 1
    counts = journal.counts()
    assert (counts["sent"], counts["pending"], counts["sending"]) == (1, 2, 0)
    journal.close()


# --- settled states and the report --------------------------------------------------------------


def test_rows_left_sending_are_unknown_in_counts_and_report(tmp_path):
    journal = journal_with_rows(tmp_path / "j.sqlite3", n=3)
    journal.mark(2, "sent", message_id="msg_1", http_status=201)
    journal.mark(3, "sending")  # its answer could not be recorded
    counts = service.settled_counts(journal)
    assert (counts["sent"], counts["unknown"], counts["pending"]) == (1, 1, 1)
    assert "sending" not in counts
    report = tmp_path / "r.csv"
    service.write_report(journal, report)
    with report.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["sent", "unknown", "pending"]
    assert "answer was not recorded" in rows[1]["error"]
    journal.close()


FORMULA = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def unescape(cell):
    return cell[1:] if cell.startswith("'") else cell


@given(st.text())
def test_safe_cell_is_inert_and_reversible_through_csv(text):
    cell = service.safe_cell(text)
    assert not cell.startswith(FORMULA)
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow([cell, "x"])
    buffer.seek(0)
    (row,) = list(csv.reader(buffer))
    assert unescape(row[0]) == text


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+6281234567891", "'+6281234567891"), ("-100123", "'-100123"),
    ("@budi", "'@budi"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("'quoted", "''quoted"),
    ("6281234567891", "6281234567891"), ("Halo", "Halo"), (None, ""), (201, "201"),
])
def test_safe_cell_examples(value, cell):
    assert service.safe_cell(value) == cell


def test_a_symlinked_journal_shares_the_lock(tmp_path):
    real = tmp_path / "real.sqlite3"
    Journal(real).close()
    link = tmp_path / "link.sqlite3"
    link.symlink_to(real)
    lock = JournalLock.acquire(real)
    with pytest.raises(JournalBusy):
        JournalLock.acquire(link)
    lock.release()


def test_discard_removes_the_files_before_releasing_the_lock(tmp_path):
    path = tmp_path / "j.sqlite3"
    journal = journal_with_rows(path)
    journal.hold(JournalLock.acquire(path))
    journal.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert holder(path) is None


def _interrupted_run(tmp_path, template="Halo {name}", sent=1):
    """c.csv with 3 rows, run with ``template`` until ``sent`` rows went out."""
    from cloudchat_cli.services.broadcast.plan import BroadcastOptions, prepare, run_preflight

    source = tmp_path / "c.csv"
    source.write_text("to,name\n+6281234567891,A\n+6281234567892,B\n+6281234567893,C\n",
                      encoding="utf-8")
    opts = BroadcastOptions(csv_path=source, template=template)
    info, tmpl = prepare(opts)
    path = tmp_path / "j.sqlite3"
    opened = service.open_journal(path, info, opts, explicit=False)
    run_preflight(info, tmpl, opts, opened.journal)
    for row, _ in opened.journal.pending(0)[:sent]:
        opened.journal.mark(row, "sent", message_id="m", http_status=201)
    opened.journal.close()
    return source, path


def _options(source, template):
    from cloudchat_cli.services.broadcast.plan import BroadcastOptions, prepare

    opts = BroadcastOptions(csv_path=source, template=template)
    return prepare(opts)[0], opts


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_dry_run_check_refuses_exactly_like_the_real_run_and_writes_nothing(tmp_path):
    source, path = _interrupted_run(tmp_path)
    info, changed = _options(source, "Hello {name}")
    before = _files(tmp_path)
    with pytest.raises(service.UsageError) as dry:
        service.check_journal(path, info, changed, explicit=False)
    assert _files(tmp_path) == before  # no lock file, no journal change
    with pytest.raises(service.UsageError) as real:
        service.open_journal(path, info, changed, explicit=False)
    assert dry.value.exit_code == real.value.exit_code == 2
    assert (dry.value.message, dry.value.hint) == (real.value.message, real.value.hint)
    assert "template or options changed" in dry.value.message


def test_dry_run_check_passes_where_the_real_run_goes_ahead(tmp_path):
    source, path = _interrupted_run(tmp_path)
    service.check_journal(path, *_options(source, "Halo {name}"), explicit=False)  # resumes
    service.check_journal(tmp_path / "none.sqlite3", *_options(source, "Hello {name}"),
                          explicit=False)
    assert not (tmp_path / "none.sqlite3").exists()
    (tmp_path / "fresh").mkdir()
    fresh, never_sent = _interrupted_run(tmp_path / "fresh", sent=0)  # the real run replaces it
    service.check_journal(never_sent, *_options(fresh, "Hello {name}"), explicit=False)


def test_cli_dry_run_exits_2_where_the_real_run_refuses_a_changed_template(tmp_path, env):
    """The reported case end to end: an interrupted "Halo {name}" run, then "Hello {name}"."""
    from .conftest import run_cli

    source, path = _interrupted_run(tmp_path)
    before = path.read_bytes()
    args = ["--sandbox", "broadcast", str(source), "-t", "Hello {name}", "--journal", str(path)]
    dry = run_cli(*args, "--dry-run", env=env)
    real = run_cli(*args, "--yes", env=env)
    assert (dry.returncode, real.returncode) == (2, 2), dry.stderr + real.stderr
    assert "template or options changed" in dry.stderr
    assert dry.stderr.strip() == real.stderr.strip()
    assert "Plan:" not in dry.stdout + dry.stderr
    assert path.read_bytes() == before
