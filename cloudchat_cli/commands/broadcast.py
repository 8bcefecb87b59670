"""``cloudchat broadcast FILE.csv``; ``status``/``discard`` live in ``broadcast_runs``, ``track``
in ``broadcast_track``. The lifecycle itself is ``services/broadcast/usecase.py``."""

from __future__ import annotations

from pathlib import Path

import typer

from cloudchat_cli.commands import broadcast_flags as f
from cloudchat_cli.commands import broadcast_runs, broadcast_track
from cloudchat_cli.commands.groups import default_group
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


@app.command("run", hidden=True, epilog=EPILOG)
def run(
    ctx: typer.Context,
    file: Path = f.FILE, template: str | None = f.TEMPLATE,
    template_file: Path | None = f.TEMPLATE_FILE, to_column: str = f.TO_COLUMN,
    channel: str | None = f.CHANNEL, delimiter: str | None = f.DELIMITER,
    encoding: str | None = f.ENCODING, sheet: str | None = f.SHEET, strict: bool = f.STRICT,
    skip_invalid: bool = f.SKIP_INVALID, allow_duplicates: bool = f.ALLOW_DUPLICATES,
    dry_run: bool = f.DRY_RUN, preview: int = f.PREVIEW, yes: bool = f.YES,
    concurrency: int = f.CONCURRENCY, journal: Path | None = f.JOURNAL,
    report: Path | None = f.REPORT, retry_failed: bool = f.RETRY_FAILED,
    retry_unknown: bool = f.RETRY_UNKNOWN, log_every: int = f.LOG_EVERY,
    quiet: bool = f.QUIET, json_out: bool = f.JSON_OUT, again: bool = f.AGAIN,
    exclude: Path | None = f.EXCLUDE, rate: str | None = f.RATE, spacing: str = f.SPACING,
    between: str | None = f.BETWEEN, tz: str | None = f.TZ, at: str | None = f.AT,
) -> None:
    """Send one message per CSV row (resumable; never sends a row twice)."""
    from cloudchat_cli.services.broadcast import usecase

    request = usecase.BroadcastRequest(
        file=file, template=f.read_template(template, template_file), to_column=to_column,
        channel=channel, delimiter=delimiter, encoding=encoding, sheet=sheet, strict=strict,
        skip_invalid=skip_invalid, allow_duplicates=allow_duplicates, preview=preview,
        yes=yes, concurrency=concurrency, journal=journal, report=report,
        retry_failed=retry_failed, retry_unknown=retry_unknown, again=again, exclude=exclude,
        rate=rate, spacing=spacing, between=between, tz=tz, at=at, argv=ctx.obj.argv)
    if dry_run:
        _dry_run(ctx.obj, request, json_out)
        return
    from cloudchat_cli.output.broadcast import HumanReporter

    outcome = usecase.run(ctx.obj, request, HumanReporter(quiet=quiet, log_every=log_every))
    _finish(outcome, quiet=quiet, json_out=json_out)


def _dry_run(session, request, json_out: bool) -> None:
    """Show the plan; exit 2 exactly when the real run would refuse."""
    from cloudchat_cli.output.broadcast import show_dry_run
    from cloudchat_cli.services.broadcast import usecase

    dry = usecase.dry_run(session, request)
    if json_out:
        console.print_json(dry.json)
    else:
        show_dry_run(dry)
    if dry.refusal is not None:
        raise dry.refusal
    if not json_out:
        console.info("Dry run: nothing was sent.")


def _finish(outcome, *, quiet: bool, json_out: bool) -> None:
    """Render how the run ended and map it to the exit code (0, 8, 130 or the error's)."""
    from cloudchat_cli.core.errors import CloudChatError, ExitCode, Interrupted
    from cloudchat_cli.output.broadcast import show_row_errors, show_summary
    from cloudchat_cli.services.broadcast.usecase import outcome_line

    counts = outcome.counts
    if json_out:
        console.print_json({**counts, "journal": str(outcome.journal),
                            "warnings": outcome.warnings})
    line = outcome_line(counts)
    if outcome.ended == "up_to_date":
        quiet = True  # its one line said it all
    if not quiet or (outcome.bad or counts["pending"]):
        show_summary(counts, line, quiet=quiet)
    if outcome.error is not None:
        raise outcome.error
    if outcome.ended == "interrupted":
        hint = f"resume with: {outcome.resume}"
        if outcome.abandoned:
            hint = (f"{outcome.abandoned} row(s) were in flight and are unknown (they may have "
                    f"been delivered): add --retry-unknown to resend them; {hint}")
        raise Interrupted(f"broadcast interrupted: {line}", hint=hint)
    if outcome.bad:
        if not quiet:
            show_row_errors(outcome.errors)
        raise CloudChatError(
            f"{outcome.bad} row(s) failed or have an unknown outcome",
            hint="see --report; --retry-failed resends failed rows, --retry-unknown the unknown "
            "ones (they may have been delivered)",
            exit_code=ExitCode.PARTIAL,
        )


app.command("status")(broadcast_runs.status)
app.command("discard")(broadcast_runs.discard)
app.command("track", epilog=broadcast_track.EPILOG)(broadcast_track.track)
