"""The broadcast use case in-process: a real journal and HTTP server, a fake reporter.

No subprocess: ``usecase.run`` is called directly with a ``Session`` (the embedded sandbox or a
hostile server on loopback), and what people would be told is recorded by ``FakeReporter``.
Stops are real signals sent to this process (the use case's handlers replace pytest's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import pytest

from cloudchat_cli.app import embedded_sandbox
from cloudchat_cli.core.errors import Interrupted, UsageError
from cloudchat_cli.services.broadcast import usecase
from cloudchat_cli.services.session import GlobalOptions, Session

from .hostile import HostileServer


class FakeProgress:
    def __init__(self, on_row=None):
        self.rows: list[tuple[int, str]] = []
        self.started = self.stopped = False
        self._on_row = on_row

    def start(self): self.started = True
    def stop(self): self.stopped = True
    def notify(self, event, data): pass
    def tick(self): pass
    def paused(self, until): pass

    def on_row(self, row, state, info):
        self.rows.append((row, state))
        if self._on_row is not None:
            self._on_row(row, state)


class FakeReporter:
    def __init__(self, *, answer: bool | None = True, on_row=None):
        self.notices: list[tuple[str, dict]] = []
        self.asked: list[int] = []
        self.answer = answer
        self.progress_of = FakeProgress(on_row)
        self.heard = {"stopping": threading.Event(), "stopping_now": threading.Event()}

    def notice(self, kind, **data):
        self.notices.append((kind, data))
        if kind in self.heard:
            self.heard[kind].set()

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.notices]

    def data(self, kind) -> dict:
        return next(d for k, d in self.notices if k == kind)

    @contextlib.contextmanager
    def checking(self, size):
        yield None

    def confirm(self, pending):
        self.asked.append(pending)
        return self.answer

    def progress(self, pending, etiquette):
        return self.progress_of


@pytest.fixture
def sandbox_session(isolated):
    session = Session(GlobalOptions(sandbox=True), sandbox_provider=embedded_sandbox)
    yield session
    session.close()


@pytest.fixture
def hostile_session(isolated, monkeypatch):
    servers = []

    def make(mode, **env):
        server = HostileServer(mode)
        servers.append(server)
        for key, value in server.env(**env).items():
            monkeypatch.setenv(key, value)
        session = Session(GlobalOptions())
        servers.append(session)
        return server, session

    yield make
    for item in servers:
        (item.close if isinstance(item, Session) else item.stop)()


def customers(tmp_path, n: int, bad: int = 0):
    path = tmp_path / "customers.csv"
    rows = [f"62812345{i:03d}7,c{i}" for i in range(n)] + [f"not-a-number,x{i}" for i in range(bad)]
    path.write_text("to,name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def request(path, **kw) -> usecase.BroadcastRequest:
    kw.setdefault("yes", True)
    return usecase.BroadcastRequest(file=path, template="Hi {name}",
                                    argv=("broadcast", str(path), "-t", "Hi {name}"), **kw)


def test_a_run_sends_every_row_reports_and_ends_done(tmp_path, sandbox_session):
    report = tmp_path / "out.csv"
    reporter = FakeReporter()
    outcome = usecase.run(sandbox_session, request(customers(tmp_path, 3), report=report),
                          reporter)
    assert outcome.ended == "done" and outcome.error is None and outcome.bad == 0
    assert (outcome.counts["sent"], outcome.counts["pending"]) == (3, 0)
    assert reporter.kinds() == ["plan", "report"]
    assert reporter.data("report")["rows"] == 3 and report.is_file()
    assert sorted(reporter.progress_of.rows) == [(2, "sent"), (3, "sent"), (4, "sent")]
    assert reporter.progress_of.started and reporter.progress_of.stopped
    assert outcome.resume == f"cloudchat broadcast {tmp_path / 'customers.csv'} -t 'Hi {{name}}'"


def test_the_same_broadcast_again_is_up_to_date_and_sends_nothing(tmp_path, sandbox_session):
    path = customers(tmp_path, 2)
    usecase.run(sandbox_session, request(path), FakeReporter())
    reporter = FakeReporter()
    outcome = usecase.run(sandbox_session, request(path), reporter)
    assert outcome.ended == "up_to_date" and reporter.kinds() == ["up_to_date"]
    assert reporter.data("up_to_date")["last_sent_at"] is not None
    assert outcome.counts["sent"] == 2 and reporter.progress_of.rows == []


def test_not_confirmed_is_interrupted_and_leaves_no_journal(tmp_path, sandbox_session):
    reporter = FakeReporter(answer=False)
    with pytest.raises(Interrupted, match="not confirmed; nothing was sent"):
        usecase.run(sandbox_session, request(customers(tmp_path, 2), yes=False), reporter)
    assert reporter.asked == [2]
    assert not list((tmp_path / "state" / "broadcasts").glob("*.sqlite3"))


def test_nobody_to_ask_is_a_usage_error_naming_yes(tmp_path, sandbox_session):
    with pytest.raises(UsageError, match="without a terminal to confirm") as err:
        usecase.run(sandbox_session, request(customers(tmp_path, 2), yes=False),
                    FakeReporter(answer=None))
    assert "--yes" in err.value.hint


def test_invalid_rows_refuse_before_sending_and_show_them(tmp_path, sandbox_session):
    reporter = FakeReporter()
    with pytest.raises(UsageError, match="1 invalid row"):
        usecase.run(sandbox_session, request(customers(tmp_path, 2, bad=1)), reporter)
    assert reporter.kinds() == ["invalid"] and reporter.progress_of.rows == []


def test_dry_run_plans_and_names_the_refusal_without_a_journal(tmp_path, sandbox_session):
    dry = usecase.dry_run(sandbox_session, request(customers(tmp_path, 2, bad=1)))
    assert dry.plan.valid == 2 and dry.plan.invalid == 1
    assert isinstance(dry.refusal, UsageError) and dry.json["withheld"]["already_sent"] == 0
    assert not (tmp_path / "state" / "broadcasts").exists() or not list(
        (tmp_path / "state" / "broadcasts").glob("*.sqlite3"))


def test_first_ctrl_c_finishes_the_row_in_flight_and_stops(tmp_path, sandbox_session):
    reporter = FakeReporter()

    def after_first_row(row, state):
        if len(reporter.progress_of.rows) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the use case, on the main thread
            assert reporter.heard["stopping"].wait(30)

    reporter.progress_of._on_row = after_first_row
    outcome = usecase.run(sandbox_session, request(customers(tmp_path, 4), concurrency=1),
                          reporter)
    assert outcome.ended == "interrupted" and not outcome.stopped_now
    assert (outcome.counts["sent"], outcome.counts["pending"]) == (1, 3)
    assert reporter.data("stopping") == {"signal": "Ctrl-C"}
    assert signal.getsignal(signal.SIGINT) is not None  # handlers given back
    assert "stopping_now" not in reporter.kinds()


def test_second_ctrl_c_abandons_the_request_in_flight(tmp_path, hostile_session):
    server, session = hostile_session("slow-status", CLOUDCHAT_TIMEOUT="3600")
    reporter = FakeReporter()
    before = signal.getsignal(signal.SIGINT)

    def press_twice():
        while not server.requests:  # the request is in flight (its answer never ends)
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        assert reporter.heard["stopping"].wait(30)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_twice, daemon=True).start()
    outcome = usecase.run(session, request(customers(tmp_path, 3), concurrency=1), reporter)
    assert outcome.ended == "interrupted" and outcome.stopped_now and outcome.abandoned == 1
    assert (outcome.counts["unknown"], outcome.counts["pending"]) == (1, 2)
    assert reporter.kinds()[-2:] == ["stopping", "stopping_now"]
    assert len(server.requests) == 1
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize(("argv", "journal", "expected"), [
    (["broadcast", "a.csv", "--at", "08:00", "-y"], None, "cloudchat broadcast a.csv -y"),
    (["broadcast", "a.csv", "--at=08:00"], None, "cloudchat broadcast a.csv"),
    (["broadcast", "a b.csv", "--journal", "j1"], "j2",
     "cloudchat broadcast 'a b.csv' --journal j2"),
])
def test_resume_command_drops_at_and_points_at_a_saved_journal(argv, journal, expected):
    from pathlib import Path

    assert usecase.resume_command(argv, Path(journal) if journal else None) == expected
