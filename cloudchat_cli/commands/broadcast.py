"""``cloudchat broadcast FILE.csv``; ``status`` and ``discard`` live in ``broadcast_runs``."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path

import typer

from cloudchat_cli.commands import broadcast_runs, broadcast_track
from cloudchat_cli.commands._groups import default_group
from cloudchat_cli.commands.completion import complete_channel
from cloudchat_cli.entry import steady_gc
from cloudchat_cli.output import console

EPILOG = """[bold]Examples[/bold]

  cloudchat broadcast customers.csv -t "Halo {name}" --dry-run
  cloudchat broadcast customers.csv -t "Halo {name}" --report hasil.csv --yes
  cloudchat broadcast customers.xlsx -t "Hi {name|Kak}" --report hasil.xlsx -y
  cloudchat broadcast customers.csv -t "Halo {name}" --yes   # run again
  cloudchat broadcast customers.csv -t "Halo {name}" --yes --again   # daily
  cloudchat broadcast customers.csv -t "Halo {name}" --dry-run --json | jq .
  cloudchat broadcast status            # every run: when, template, counts
  cloudchat broadcast discard customers.csv --yes   # drop an unfinished one

CSV or .xlsx: a header row; a 'to' column (--to-column); optional per-row channel, type, \
text, media_url, caption, filename; every column is a template variable ({name|Kak}: Kak \
where the cell is empty). Rows are numbered as in a spreadsheet (header = row 1). CSV \
exports of Excel, LibreOffice, Google Sheets and pandas are read as they are (UTF-16, sep= \
line, empty rows and columns); a legacy file needs --encoding cp1252. In a CSV, keep phone \
numbers in a Text column: a number column turns them into 6.28123E+12 or 6281234567891.0, \
which are refused (an .xlsx keeps them exact).

Exit 0 all sent, 8 some failed/unknown, 2 input errors (also --dry-run when the real run \
would refuse) or another run of the same broadcast active, 1 journal removed or unwritable, \
130 interrupted.
"""


app = typer.Typer(
    cls=default_group("run"),
    help="Send one templated message per CSV row at the App's rate limit; resumable.\n\n"
    "Usage: cloudchat broadcast FILE.csv [OPTIONS] (see `cloudchat broadcast --help`)",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _read_template(template: str | None, template_file: Path | None) -> str | None:
    from cloudchat_cli.core.errors import UsageError

    if template is not None and template_file is not None:
        raise UsageError("give --template or --template-file, not both")
    if template_file is None:
        return template
    try:
        return template_file.read_text(encoding="utf-8").rstrip("\n")
    except UnicodeDecodeError:
        raise UsageError(f"template file {template_file} is not UTF-8") from None
    except OSError as exc:
        raise UsageError(f"cannot read template file {template_file}: {exc.strerror}") from None


@app.command("run", hidden=True, epilog=EPILOG)
def run(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The CSV or .xlsx file.", show_default=False),
    template: str | None = typer.Option(
        None, "--template", "-t", help='Message template, e.g. "Halo {name}".',
        show_default=False),
    template_file: Path | None = typer.Option(
        None, "--template-file", help="Read the template from a UTF-8 file.", show_default=False),
    to_column: str = typer.Option("to", "--to-column", help="Column holding the recipient."),
    channel: str | None = typer.Option(
        None, "--channel", "-c", autocompletion=complete_channel,
        help="Channel for every row (else the row's, else the profile's).",
        show_default=False),
    delimiter: str | None = typer.Option(
        None, "--delimiter", help="Field delimiter (default: Excel's sep= line, else sniffed: "
        ", ; tab or |).", show_default=False),
    encoding: str | None = typer.Option(
        None, "--encoding", help="Encoding of a legacy CSV, e.g. cp1252 or latin-1 (default: "
        "UTF-8; a UTF-16 or UTF-8 byte-order mark is always honoured).", show_default=False),
    sheet: str | None = typer.Option(
        None, "--sheet", help="Sheet of an .xlsx workbook (default: the first visible one).",
        show_default=False),
    strict: bool = typer.Option(
        False, "--strict", help="Refuse when a template {column} is empty in some row (without "
        "it: a warning)."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Send the valid rows; report the invalid ones."),
    allow_duplicates: bool = typer.Option(
        False, "--allow-duplicates", help="Send rows with the same channel, recipient and text."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check and plan only; send nothing. Exits 2 when the real run "
        "would refuse (a CI check)."),
    preview: int = typer.Option(3, "--preview", help="Rendered messages shown by --dry-run.",
                                min=0),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight at once.",
                                    min=1, max=64),
    journal: Path | None = typer.Option(
        None, "--journal", help="Journal file (default: one per CSV in the state dir).",
        show_default=False),
    report: Path | None = typer.Option(
        None, "--report", help="Write a per-row report here, .xlsx or CSV (at the end or on "
        "interrupt), with the input's columns.",
        show_default=False),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Resend rows that failed."),
    retry_unknown: bool = typer.Option(
        False, "--retry-unknown", help="Resend rows whose outcome is unknown (may duplicate)."),
    log_every: int = typer.Option(100, "--log-every", help="Without a TTY: log every N rows.",
                                  min=1),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only a summary line on failure."),
    json_out: bool = typer.Option(
        False, "--json", help="Print the final counts as JSON (with --dry-run: the plan)."),
    again: bool = typer.Option(
        False, "--again", help="Send rows an earlier run of this CSV already sent (a "
        "recurring job); without it they are skipped."),
    exclude: Path | None = typer.Option(
        None, "--exclude", help="Skip these recipients this run: a CSV with a 'to' column, or "
        "one per line.", show_default=False),
    rate: str | None = typer.Option(
        None, "--rate", help="This broadcast's share of the App's limit, e.g. 40/min, 1/s, "
        "500/h (default: setting broadcast_rate, else all of rate_limit).", show_default=False),
    spacing: str = typer.Option(
        "auto", "--spacing", help="auto: one request every window/N; burst: as fast as the "
        "share allows; or seconds between requests."),
    between: str | None = typer.Option(
        None, "--between", help="Send only between these hours, e.g. 08:00-20:00 (may cross "
        "midnight); paused outside.", show_default=False),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone of --between and --at, e.g. Asia/Jakarta (default: the "
        "system's).", show_default=False),
    at: str | None = typer.Option(
        None, "--at", help='Start at this time, e.g. "2026-12-01 08:00" (the plan is shown '
        "at once).", show_default=False),
) -> None:
    """Send one message per CSV row (resumable; never sends a row twice)."""
    steady_gc()
    import functools
    import time

    from cloudchat_cli.services.broadcast import pacing, runs, service
    from cloudchat_cli.services.broadcast import plan as planning

    session = ctx.obj
    cfg = session.settings()
    etiquette = pacing.prepare(cfg, rate=rate, spacing=spacing, between=between, tz=tz, at=at,
                               now=time.time())
    options = planning.BroadcastOptions(
        csv_path=file,
        template=_read_template(template, template_file),
        to_column=to_column,
        channel=_channel(channel),
        default_channel=cfg.default_channel,
        default_country_code=cfg.default_country_code,
        delimiter=delimiter,
        allow_duplicates=allow_duplicates,
        encoding=encoding,
        sheet=sheet,
    )
    info, tmpl = planning.prepare(options)
    if report is not None:
        report = service.report_target(report, info)
    if exclude is not None:
        runs.check_exclude(exclude, cfg.default_country_code)  # before anything is written
    api = "sandbox" if session.options.sandbox else cfg.base_url  # its port changes every run
    ident = service.Identity(cfg.profile, api, service.broadcast_key(options, cfg.profile, api))
    path = journal or service.default_journal_path(options, cfg.profile, api)
    withhold = functools.partial(runs.withhold, key=ident.key, profile=cfg.profile,
                                 again=again, exclude=exclude,
                                 default_country_code=cfg.default_country_code)
    if dry_run:
        service.check_journal(path, info, options, explicit=journal is not None)
        _dry_run(info, tmpl, options, preview, etiquette, withhold, skip_invalid=skip_invalid,
                 json_out=json_out, strict=strict)
        return
    opened = runs.open_run(path, info, options, explicit=journal is not None, again=again,
                           identity=ident)
    jr = opened.journal
    try:
        if opened.finished and not again and _nothing_to_do(jr, report, json_out, quiet):
            return
        if opened.archived and not quiet:
            console.info(f"The previous broadcast of this file was finished; its journal is "
                         f"kept as {opened.archived}.")
        if opened.replaced and not quiet:
            console.info("An earlier run of this file was never confirmed (nothing was sent): "
                         "starting afresh.")
        if opened.resumed:
            _resume_notes(jr, retry_failed, retry_unknown, quiet, again)
        else:
            _preflight(info, tmpl, options, jr, quiet)
        held = withhold(jr, fresh=not opened.resumed, current=path)
        plan = planning.summarise(jr)
        if plan.invalid and not skip_invalid:
            _show_invalid(plan)
            if not opened.resumed:
                jr.discard()
            raise _refusal(plan)
        if (strict_error := planning.refusal(plan, strict)) is not None:
            if not opened.resumed:
                jr.discard()
            raise strict_error
        counts = jr.counts()
        if not quiet:
            _show_plan(plan, counts, etiquette, resumed=opened.resumed)
            broadcast_runs.show_withheld(held, counts)
            if plan.invalid:
                _show_invalid(plan)
        if counts["pending"] == 0:
            if held.already_sent and not held.again:
                console.info(f"all {held.already_sent} row(s) already received this exact "
                             f"message (last on {runs.day(held.last_sent_at)}): nothing to do; "
                             "add --again to send it again")
            elif not quiet:
                console.info("Nothing left to send.")
            _finish(jr, report, quiet, json_out, None)
            return
        try:
            _confirm(counts["pending"], yes)
        except BaseException:  # "no", no terminal, or Ctrl-C at the prompt
            if not service.attempted(jr.counts()):
                jr.discard()  # nothing went out: leave nothing half-started behind
            raise
        _send(session, jr, counts["pending"], concurrency, quiet, log_every, report, json_out,
              etiquette, ident.key)
    finally:
        jr.close()


def _refusal(plan):
    from cloudchat_cli.core.errors import UsageError

    return UsageError(
        f"{plan.invalid} invalid row(s); nothing was sent",
        hint="fix them, or pass --skip-invalid to send the valid rows and report the rest",
    )


def _channel(value: str | None) -> str | None:
    if value is None:
        return None
    from cloudchat_cli.services.messages import parse_channel

    return parse_channel(value)


def _preflight(info, tmpl, options, jr, quiet: bool) -> None:
    from cloudchat_cli.services.broadcast import plan as planning

    status = None
    if not quiet and console.stderr_is_tty() and info.size > 1024 * 1024:
        status = console.err().status("Checking rows…")
        status.start()
    try:
        planning.run_preflight(
            info, tmpl, options, jr,
            progress=(lambda n: status.update(f"Checking rows… {n:,}")) if status else None,
        )
    finally:
        if status:
            status.stop()


def _resume_notes(jr, retry_failed: bool, retry_unknown: bool, quiet: bool,
                  again: bool = False) -> None:
    from cloudchat_cli.services.broadcast import service

    resumed = service.resume(jr, retry_failed=retry_failed, retry_unknown=retry_unknown,
                             again=again)
    if quiet:
        return
    if resumed.crashed:
        console.warn(f"{resumed.crashed} row(s) were being sent when the last run stopped; "
                     "they are marked unknown (--retry-unknown resends them)")
    if resumed.requeued:
        states = ' and '.join(s.replace('_', ' ') for s in resumed.states)
        console.info(f"Resending {resumed.requeued} {states} row(s).")


def _nothing_to_do(jr, report, json_out: bool, quiet: bool) -> bool:
    """An unchanged broadcast already run to its end: say so in one line, even with --quiet
    (a recurring job without --again must never do nothing silently)."""
    from cloudchat_cli.services.broadcast import runs, service

    counts = service.settled_counts(jr)
    if counts["failed"] or counts["unknown"]:
        return False  # the usual resume path names them and how to resend
    last = jr.last_sent_at()
    done = f"already sent on {runs.day(last)}" if last else "already run (nothing was sent)"
    console.info(f"{done}: nothing to do; add --again to send it again")
    _finish(jr, report, True, json_out, None)
    return True


def _show_invalid(plan) -> None:
    for _row, error in plan.errors:
        console.err().print(f"  [red]✗[/red] {console.escape(error)}")
    if plan.invalid > len(plan.errors):
        console.info(f"  … and {plan.invalid - len(plan.errors)} more invalid row(s)")


def _show_plan(plan, counts, etiquette, *, resumed: bool) -> None:
    import time

    per = ", ".join(f"{ch} {n}" for ch, n in plan.per_channel.items()) or "none"
    empty = f", {plan.empty_rows} empty row(s) skipped" if plan.empty_rows else ""
    console.info(
        f"Plan: {plan.rows} rows: {plan.valid} valid ({per}), {plan.invalid} invalid, "
        f"{plan.duplicates} duplicate(s) skipped{empty}"
    )
    for note in plan.notes:
        console.info(f"  note: {note}")
    for warning in plan.warnings:
        console.warn(warning["message"])
    if plan.duplicates:
        console.info("  duplicates have the same channel, recipient and message as an earlier "
                     "row; --allow-duplicates sends them")
    if resumed:
        console.info(f"Resuming: {counts['sent']} sent, {counts['failed']} failed, "
                     f"{counts['unknown']} unknown, {counts['pending']} to send")
    console.info(f"ETA: {etiquette.describe(counts['pending'], time.time())}")


def _dry_run(info, tmpl, options, preview: int, etiquette, withhold, *, skip_invalid: bool,
             json_out: bool, strict: bool = False) -> None:
    """Check every row like the real run; exit 2 exactly when the real run would refuse."""
    import tempfile

    from cloudchat_cli.services.broadcast import plan as planning
    from cloudchat_cli.services.broadcast.journal import Journal

    with tempfile.TemporaryDirectory(prefix="cloudchat-dry-") as tmp:
        jr = Journal(Path(tmp) / "dry-run.sqlite3")
        try:
            planning.run_preflight(info, tmpl, options, jr)
            # History as the real run would see it: the broadcast's journal included.
            held = withhold(jr, fresh=True, current=None)
            plan = planning.summarise(jr)
            counts = jr.counts()
            shown = jr.preview(preview)
            if json_out:
                data = planning.plan_json(
                    plan, counts, etiquette, info, preview=shown, skip_invalid=skip_invalid,
                    invalid=planning.invalid_rows(jr, options), strict=strict)
                data["withheld"] = {
                    "already_sent": held.already_sent, "last_sent_at": held.last_sent_at,
                    "again": held.again, "opted_out": held.opted_out, "excluded": held.excluded}
                console.print_json(data)
            else:
                _show_plan(plan, counts, etiquette, resumed=False)
                broadcast_runs.show_withheld(held, counts)
                if plan.invalid:
                    _show_invalid(plan)
                _show_preview(shown)
        finally:
            jr.close()
    if plan.invalid and not skip_invalid:
        raise _refusal(plan)
    if (strict_error := planning.refusal(plan, strict)) is not None:
        raise strict_error
    if not json_out:
        console.info("Dry run: nothing was sent.")


def _show_preview(shown) -> None:
    for row, payload in shown:
        body = payload.get("text") or payload.get("media", {}).get("url", "")
        console.out().print(
            f"[bold]row {row}[/bold] → {console.escape(payload['channel'])} "
            f"{console.escape(payload['to'])}:\n{console.escape(body)}\n"
        )


def _confirm(pending: int, yes: bool) -> None:
    from cloudchat_cli.core.errors import Interrupted, UsageError

    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(
            f"about to send {pending} message(s) without a terminal to confirm",
            hint="add --yes to send (so a cron line is always explicit), or --dry-run to check",
        )
    if not typer.confirm(f"Send {pending} message(s)?", default=False, err=True):
        raise Interrupted("not confirmed; nothing was sent")


def _send(session, jr, pending, concurrency, quiet, log_every, report, json_out,
          etiquette, name) -> None:
    from cloudchat_cli.core.errors import Interrupted
    from cloudchat_cli.output.progress import BroadcastProgress
    from cloudchat_cli.services.broadcast.runner import Runner

    progress = BroadcastProgress(pending, quiet=quiet, log_every=log_every, schedule=etiquette)
    client = session.client(notify=progress.notify)
    etiquette.apply(client.throttle, name, on_pause=progress.paused)
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise Interrupted("interrupted again: stopping at once (rows in flight become "
                              "unknown)", hint=f"resume with: {resume_command()}")
        stop.set()
        if not quiet:
            console.info("Stopping: letting requests in flight finish (Ctrl-C again to quit "
                          "at once)…")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    runner = Runner(jr, client, concurrency=concurrency, stop=stop, on_row=progress.on_row,
                    on_tick=progress.tick)
    progress.start()
    try:
        result = runner.run()
    finally:
        progress.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if report is not None:
            service_report(jr, report, quiet)
    _journal_moved(jr, result, report)
    _finish(jr, None, quiet, json_out, result)


def _journal_moved(jr, result, report) -> None:
    """Explain a run stopped because its journal was removed or replaced, and save its record."""
    from cloudchat_cli.services.broadcast import service
    from cloudchat_cli.services.broadcast.journal import JournalMoved

    exc = result.fatal
    if not isinstance(exc, JournalMoved):
        return
    saved = service.rescue(jr, exc)
    if saved is not None:
        exc.message += f"; this run's record is saved as {saved}"
        exc.hint = (f"resume from it (rows sent are not sent again) with: "
                    f"{resume_command(journal=saved)}")
    else:
        seen = f"; the report {report} shows what was sent" if report is not None else ""
        exc.hint = (f"this run's record could not be saved{seen}; running the same command "
                    "again may resend rows already sent")
    exc.resume_hint_given = True


def resume_command(journal: Path | None = None) -> str:
    # --at has done its work once the run began: resuming starts at once (a passed --at is
    # refused, so keeping it would make the printed command fail).
    argv = _without(sys.argv[1:], "--at")
    if journal is not None:
        argv = _without(argv, "--journal") + ["--journal", str(journal)]
    return shlex.join(["cloudchat", *argv])


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


def service_report(jr, report: Path, quiet: bool) -> None:
    from cloudchat_cli.services.broadcast import service

    rows = service.write_report(jr, report)
    if getattr(report, "note", None):
        console.warn(report.note)
    if not quiet:
        console.info(f"Report: {report} ({rows} rows)")


def _finish(jr, report, quiet, json_out, result) -> None:
    from cloudchat_cli.core.errors import CloudChatError, ExitCode, Interrupted
    from cloudchat_cli.services.broadcast import runs, service

    runs.after_run(jr)
    if report is not None:
        service_report(jr, report, quiet)
    counts = service.settled_counts(jr)
    if json_out:
        from cloudchat_cli.services.broadcast.plan import summarise

        console.print_json({**counts, "journal": str(jr.path),
                            "warnings": summarise(jr, 0).warnings})
    bad = counts["failed"] + counts["unknown"]
    line = (f"{counts['sent']} sent, {counts['failed']} failed, {counts['unknown']} unknown, "
            f"{counts['pending']} pending, {counts['invalid']} invalid, "
            f"{counts['skipped']} skipped")
    line += "".join(f", {counts[s]} {s.replace('_', ' ')}" for s in runs.WITHHELD if counts[s])
    if not quiet or (bad or counts["pending"]):
        _summary(counts, line, quiet)
    if result is not None and result.fatal is not None:
        exc = result.fatal
        if not getattr(exc, "resume_hint_given", False):
            exc.hint = (exc.hint + "; " if exc.hint else "") + f"resume with: {resume_command()}"
        raise exc
    if result is not None and result.stopped:
        raise Interrupted(f"broadcast interrupted: {line}",
                          hint=f"resume with: {resume_command()}")
    if bad:
        if not quiet:
            for row, error in jr.errors(("failed", "unknown"), 20):
                console.err().print(f"  [red]✗[/red] row {row}: {console.escape(error or '')}")
        raise CloudChatError(
            f"{bad} row(s) failed or have an unknown outcome",
            hint="see --report; --retry-failed resends failed rows, --retry-unknown the unknown "
            "ones (they may have been delivered)",
            exit_code=ExitCode.PARTIAL,
        )


def _summary(counts, line, quiet: bool) -> None:
    if quiet:
        console.info(f"Broadcast: {line}")
        return
    from rich.table import Table

    table = Table(title="Broadcast", box=None, pad_edge=False, title_justify="left")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for state in ("sent", "failed", "unknown", "pending", "invalid", "skipped", "already_sent",
                  "opted_out", "excluded"):
        if counts[state] or state == "sent":
            table.add_row(state, str(counts[state]))
    console.err().print(table)


app.command("status")(broadcast_runs.status)
app.command("discard")(broadcast_runs.discard)
app.command("track", epilog=broadcast_track.EPILOG)(broadcast_track.track)
