"""The broadcast use case: a ``BroadcastRequest`` in, a ``Reporter`` for people, an outcome out.

``run()`` is the whole lifecycle of ``cloudchat broadcast FILE``: check the input and the
etiquette, open (resume, archive or replace) the journal, preflight, withhold history,
opt-outs and ``--exclude``, refuse or confirm, send through the throttle, write the report,
record history. ``dry_run()`` is the same check without a journal or a request. Neither
prints: every moment worth telling goes to the ``Reporter`` (``output/broadcast.py`` draws it
for people; tests pass a fake), and what happened comes back as an ``Outcome`` that the command
maps to an exit code. Input problems are raised as ``UsageError`` before anything is written.

Ctrl-C follows ``core/stop.py``: the first stops taking rows and lets the requests in flight
finish; the second stops without them (their rows stay ``sending``: reported ``unknown``).
"""

from __future__ import annotations

import functools
import shlex
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cloudchat_cli.core.errors import CloudChatError, Interrupted, UsageError
from cloudchat_cli.core.stop import GracefulStop
from cloudchat_cli.services.broadcast import pacing, runs, service
from cloudchat_cli.services.broadcast import plan as planning
from cloudchat_cli.services.broadcast.journal import Journal, JournalMoved


@dataclass
class BroadcastRequest:
    """Every option of ``cloudchat broadcast FILE``, parsed."""

    file: Path
    template: str | None = None
    to_column: str = "to"
    channel: str | None = None  # as typed (an alias is resolved here)
    delimiter: str | None = None
    encoding: str | None = None
    sheet: str | None = None
    strict: bool = False
    skip_invalid: bool = False
    allow_duplicates: bool = False
    preview: int = 3  # rendered messages a dry run shows
    yes: bool = False
    concurrency: int = 4
    journal: Path | None = None
    report: Path | None = None
    retry_failed: bool = False
    retry_unknown: bool = False
    again: bool = False
    exclude: Path | None = None
    rate: str | None = None
    spacing: str = "auto"
    between: str | None = None
    tz: str | None = None
    at: str | None = None
    argv: tuple[str, ...] = ()  # the command line after ``cloudchat``: the resume command


class RunProgress(Protocol):
    """Live progress of the sending phase (``output/progress.BroadcastProgress``)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def notify(self, event: str, data: dict[str, Any]) -> None: ...  # HTTP core events
    def on_row(self, row: int, state: str, info: dict[str, Any]) -> None: ...
    def tick(self) -> None: ...
    def paused(self, until: float | None) -> None: ...


class Reporter(Protocol):
    """What people are told while a broadcast runs. ``notice`` kinds and their data:

    ``archived`` (path), ``replaced``, ``up_to_date`` (last_sent_at: the run has nothing to
    do), ``crashed`` (rows), ``requeued`` (rows, states), ``plan`` (plan, counts, etiquette,
    resumed, held), ``invalid`` (plan), ``already_received`` (held: every row was sent before),
    ``nothing_left``, ``report`` (path, rows, note, after_nothing_to_do), ``stopping``
    (signal), ``stopping_now`` (signal). ``stopping*`` are called from a signal handler.
    """

    def notice(self, kind: str, **data: Any) -> None: ...

    def checking(self, size: int) -> AbstractContextManager[Callable[[int], None] | None]:
        """Around the preflight of a file of ``size`` bytes: a row counter, or None."""
        ...

    def confirm(self, pending: int) -> bool | None:
        """Whether to send ``pending`` messages; None when nobody can be asked."""
        ...

    def progress(self, pending: int, etiquette: pacing.Etiquette) -> RunProgress: ...


@dataclass
class Outcome:
    """How a run ended. ``ended``: ``done`` (nothing left to send), ``up_to_date`` (the same
    broadcast had already run to its end), ``interrupted`` (a stop was asked), ``fatal``
    (``error`` says why: 401, a moved journal, …)."""

    ended: str
    counts: dict[str, int]  # settled: rows left ``sending`` count as unknown
    journal: Path
    resume: str  # the command that resumes this run
    warnings: list[dict] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # failed/unknown, first 20
    error: CloudChatError | None = None
    stopped_now: bool = False  # a second Ctrl-C: requests in flight were not waited for
    abandoned: int = 0  # rows those requests were for (now unknown)

    @property
    def bad(self) -> int:
        return self.counts["failed"] + self.counts["unknown"]


@dataclass
class DryRun:
    """What the real run would do; ``refusal`` is the error it would stop with."""

    plan: planning.Plan
    counts: dict[str, int]
    held: runs.Withheld
    etiquette: pacing.Etiquette
    shown: list[tuple[int, dict]]
    json: dict[str, Any]
    refusal: UsageError | None


@dataclass
class _Prepared:
    cfg: Any
    etiquette: pacing.Etiquette
    options: planning.BroadcastOptions
    info: Any
    tmpl: Any
    report: Any
    ident: service.Identity
    path: Path
    withhold: Callable[..., runs.Withheld]


def resume_command(argv: tuple[str, ...] | list[str], journal: Path | None = None) -> str:
    """The command that resumes a run started with ``argv``.

    ``--at`` has done its work once the run began: resuming starts at once (a passed ``--at``
    is refused, so keeping it would make the printed command fail)."""
    args = _without(list(argv), "--at")
    if journal is not None:
        args = _without(args, "--journal") + ["--journal", str(journal)]
    return shlex.join(["cloudchat", *args])


def _without(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def _prepare(session: Any, req: BroadcastRequest) -> _Prepared:
    """Check every input before anything is written (exit 2 on the first problem)."""
    cfg = session.settings()
    etiquette = pacing.prepare(cfg, rate=req.rate, spacing=req.spacing, between=req.between,
                               tz=req.tz, at=req.at, now=time.time())
    channel = None
    if req.channel is not None:
        from cloudchat_cli.services.messages import parse_channel

        channel = parse_channel(req.channel)
    options = planning.BroadcastOptions(
        csv_path=req.file, template=req.template, to_column=req.to_column, channel=channel,
        default_channel=cfg.default_channel, default_country_code=cfg.default_country_code,
        delimiter=req.delimiter, allow_duplicates=req.allow_duplicates, encoding=req.encoding,
        sheet=req.sheet)
    info, tmpl = planning.prepare(options)
    report = service.report_target(req.report, info) if req.report is not None else None
    if req.exclude is not None:
        runs.check_exclude(req.exclude, cfg.default_country_code)
    api = "sandbox" if session.options.sandbox else cfg.base_url  # its port changes every run
    ident = service.Identity(cfg.profile, api, service.broadcast_key(options, cfg.profile, api))
    path = req.journal or service.default_journal_path(options, cfg.profile, api)
    withhold = functools.partial(runs.withhold, key=ident.key, profile=cfg.profile,
                                 again=req.again, exclude=req.exclude,
                                 default_country_code=cfg.default_country_code)
    return _Prepared(cfg, etiquette, options, info, tmpl, report, ident, path, withhold)


def _refusal(plan: planning.Plan, strict: bool, skip_invalid: bool) -> UsageError | None:
    if plan.invalid and not skip_invalid:
        return UsageError(
            f"{plan.invalid} invalid row(s); nothing was sent",
            hint="fix them, or pass --skip-invalid to send the valid rows and report the rest")
    return planning.refusal(plan, strict)


def dry_run(session: Any, req: BroadcastRequest) -> DryRun:
    """Check every row like the real run, in a throw-away journal; send and write nothing."""
    import tempfile

    p = _prepare(session, req)
    service.check_journal(p.path, p.info, p.options, explicit=req.journal is not None)
    with tempfile.TemporaryDirectory(prefix="cloudchat-dry-") as tmp:
        jr = Journal(Path(tmp) / "dry-run.sqlite3")
        try:
            planning.run_preflight(p.info, p.tmpl, p.options, jr)
            # History as the real run would see it: the broadcast's journal included.
            held = p.withhold(jr, fresh=True, current=None)
            plan = planning.summarise(jr)
            counts = jr.counts()
            shown = jr.preview(req.preview)
            data = planning.plan_json(
                plan, counts, p.etiquette, p.info, preview=shown, skip_invalid=req.skip_invalid,
                invalid=planning.invalid_rows(jr, p.options), strict=req.strict)
        finally:
            jr.close()
    data["withheld"] = {
        "already_sent": held.already_sent, "last_sent_at": held.last_sent_at,
        "again": held.again, "opted_out": held.opted_out, "excluded": held.excluded}
    return DryRun(plan, counts, held, p.etiquette, shown, data,
                  _refusal(plan, req.strict, req.skip_invalid))


def run(session: Any, req: BroadcastRequest, reporter: Reporter) -> Outcome:
    """Send one message per pending row of ``req.file``; resumable, never a row twice."""
    p = _prepare(session, req)
    opened = runs.open_run(p.path, p.info, p.options, explicit=req.journal is not None,
                           again=req.again, identity=p.ident)
    jr = opened.journal
    try:
        if opened.finished and not req.again:
            outcome = _up_to_date(jr, p, req, reporter)
            if outcome is not None:
                return outcome
        if opened.archived:
            reporter.notice("archived", path=opened.archived)
        if opened.replaced:
            reporter.notice("replaced")
        if opened.resumed:
            resumed = service.resume(jr, retry_failed=req.retry_failed,
                                     retry_unknown=req.retry_unknown, again=req.again)
            if resumed.crashed:
                reporter.notice("crashed", rows=resumed.crashed)
            if resumed.requeued:
                reporter.notice("requeued", rows=resumed.requeued, states=resumed.states)
        else:
            with reporter.checking(p.info.size) as counter:
                planning.run_preflight(p.info, p.tmpl, p.options, jr, progress=counter)
        held = p.withhold(jr, fresh=not opened.resumed, current=p.path)
        plan = planning.summarise(jr)
        if (refusal := _refusal(plan, req.strict, req.skip_invalid)) is not None:
            if plan.invalid and not req.skip_invalid:
                reporter.notice("invalid", plan=plan)
            if not opened.resumed:
                jr.discard()
            raise refusal
        counts = jr.counts()
        reporter.notice("plan", plan=plan, counts=counts, etiquette=p.etiquette,
                        resumed=opened.resumed, held=held)
        if counts["pending"] == 0:
            if held.already_sent and not held.again:
                reporter.notice("already_received", held=held)
            else:
                reporter.notice("nothing_left")
            return _end(jr, p.report, reporter, req, "done")
        try:
            _confirm(counts["pending"], req.yes, reporter)
        except BaseException:  # "no", no terminal, or Ctrl-C at the prompt
            if not service.attempted(jr.counts()):
                jr.discard()  # nothing went out: leave nothing half-started behind
            raise
        return _send(session, jr, counts["pending"], p, req, reporter)
    finally:
        jr.close()


def _up_to_date(jr: Journal, p: _Prepared, req: BroadcastRequest,
                reporter: Reporter) -> Outcome | None:
    """An unchanged broadcast already run to its end: nothing to do (None when some rows
    failed or are unknown: the usual resume path names them and how to resend)."""
    counts = service.settled_counts(jr)
    if counts["failed"] or counts["unknown"]:
        return None
    reporter.notice("up_to_date", last_sent_at=jr.last_sent_at())
    return _end(jr, p.report, reporter, req, "up_to_date")


def _confirm(pending: int, yes: bool, reporter: Reporter) -> None:
    if yes:
        return
    answer = reporter.confirm(pending)
    if answer is None:
        raise UsageError(
            f"about to send {pending} message(s) without a terminal to confirm",
            hint="add --yes to send (so a cron line is always explicit), or --dry-run to check",
        )
    if not answer:
        raise Interrupted("not confirmed; nothing was sent")


def _send(session: Any, jr: Journal, pending: int, p: _Prepared, req: BroadcastRequest,
          reporter: Reporter) -> Outcome:
    from cloudchat_cli.services.broadcast.runner import Runner

    progress = reporter.progress(pending, p.etiquette)
    stop = GracefulStop(on_first=lambda name: reporter.notice("stopping", signal=name),
                        on_second=lambda name: reporter.notice("stopping_now", signal=name))
    # rate-limit and retry waits end as soon as the run is asked to stop (Stopped)
    client = session.client(notify=progress.notify, sleep=stop.sleep)
    p.etiquette.apply(client.throttle, p.ident.key, on_pause=progress.paused)
    runner = Runner(jr, client, concurrency=req.concurrency, stop=stop, on_row=progress.on_row,
                    on_tick=progress.tick)
    progress.start()
    with stop:
        try:
            result = runner.run()
        finally:
            progress.stop()
            if p.report is not None:  # also when the run failed: it shows what was sent
                _write_report(jr, p.report, reporter)
    if isinstance(result.fatal, JournalMoved):
        _rescue(jr, result.fatal, p.report, req.argv)
    ended = "fatal" if result.fatal is not None else "interrupted" if result.stopped else "done"
    outcome = _end(jr, None, reporter, req, ended, error=result.fatal)
    outcome.stopped_now = stop.now.is_set()
    outcome.abandoned = result.abandoned
    return outcome


def _rescue(jr: Journal, exc: JournalMoved, report: Any, argv: tuple[str, ...]) -> None:
    """A run stopped because its journal was removed or replaced: save its record aside."""
    saved = service.rescue(jr, exc)
    if saved is not None:
        exc.message += f"; this run's record is saved as {saved}"
        exc.hint = (f"resume from it (rows sent are not sent again) with: "
                    f"{resume_command(argv, journal=saved)}")
    else:
        seen = f"; the report {report} shows what was sent" if report is not None else ""
        exc.hint = (f"this run's record could not be saved{seen}; running the same command "
                    "again may resend rows already sent")
    exc.resume_hint_given = True


def _write_report(jr: Journal, target: Any, reporter: Reporter, *,
                  after_nothing_to_do: bool = False) -> None:
    rows = service.write_report(jr, target)
    reporter.notice("report", path=target, rows=rows, note=getattr(target, "note", None),
                    after_nothing_to_do=after_nothing_to_do)


def _end(jr: Journal, report: Any, reporter: Reporter, req: BroadcastRequest, ended: str,
         error: CloudChatError | None = None) -> Outcome:
    """Record the run in history, write the report if still due, and say how it ended."""
    runs.after_run(jr)
    if report is not None:
        _write_report(jr, report, reporter, after_nothing_to_do=ended == "up_to_date")
    counts = service.settled_counts(jr)
    if error is not None and not getattr(error, "resume_hint_given", False):
        error.hint = (error.hint + "; " if error.hint else "") + \
            f"resume with: {resume_command(req.argv)}"
    bad = counts["failed"] + counts["unknown"]
    errors = [(row, err or "") for row, err in jr.errors(("failed", "unknown"), 20)] if bad \
        else []
    return Outcome(ended, counts, jr.path, resume_command(req.argv),
                   warnings=planning.summarise(jr, 0).warnings, errors=errors, error=error)


def outcome_line(counts: dict[str, int]) -> str:
    """``5 sent, 0 failed, …``: the one-line summary (also the interrupted message)."""
    line = (f"{counts['sent']} sent, {counts['failed']} failed, {counts['unknown']} unknown, "
            f"{counts['pending']} pending, {counts['invalid']} invalid, "
            f"{counts['skipped']} skipped")
    return line + "".join(f", {counts[s]} {s.replace('_', ' ')}" for s in runs.WITHHELD
                          if counts[s])
