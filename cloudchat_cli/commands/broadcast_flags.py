"""The options of ``cloudchat broadcast FILE`` (kept apart so the command reads as a list)."""

from __future__ import annotations

from pathlib import Path

import typer

from cloudchat_cli.commands.completion import complete_channel
from cloudchat_cli.commands.options import json_option, quiet_option

FILE = typer.Argument(..., help="The CSV or .xlsx file.", show_default=False)
TEMPLATE = typer.Option(None, "--template", "-t", help='Message template, e.g. "Halo {name}".',
                        show_default=False)
TEMPLATE_FILE = typer.Option(None, "--template-file", help="Read the template from a UTF-8 file.",
                             show_default=False)
TO_COLUMN = typer.Option("to", "--to-column", help="Column holding the recipient.")
CHANNEL = typer.Option(None, "--channel", "-c", autocompletion=complete_channel,
                       help="Channel for every row (else the row's, else the profile's).",
                       show_default=False)
DELIMITER = typer.Option(
    None, "--delimiter", help="Field delimiter (default: Excel's sep= line, else sniffed: "
    ", ; tab or |).", show_default=False)
ENCODING = typer.Option(
    None, "--encoding", help="Encoding of a legacy CSV, e.g. cp1252 or latin-1 (default: "
    "UTF-8; a UTF-16 or UTF-8 byte-order mark is always honoured).", show_default=False)
SHEET = typer.Option(None, "--sheet", help="Sheet of an .xlsx workbook (default: the first "
                     "visible one).", show_default=False)
STRICT = typer.Option(False, "--strict", help="Refuse when a template {column} is empty in "
                      "some row (without it: a warning).")
SKIP_INVALID = typer.Option(False, "--skip-invalid",
                            help="Send the valid rows; report the invalid ones.")
ALLOW_DUPLICATES = typer.Option(False, "--allow-duplicates",
                                help="Send rows with the same channel, recipient and text.")
DRY_RUN = typer.Option(False, "--dry-run", help="Check and plan only; send nothing. Exits 2 "
                       "when the real run would refuse (a CI check).")
PREVIEW = typer.Option(3, "--preview", help="Rendered messages shown by --dry-run.", min=0)
YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
CONCURRENCY = typer.Option(4, "--concurrency", help="Requests in flight at once.", min=1,
                           max=64)
JOURNAL = typer.Option(None, "--journal", help="Journal file (default: one per CSV in the "
                       "state dir).", show_default=False)
REPORT = typer.Option(None, "--report", help="Write a per-row report here, .xlsx or CSV (at the "
                      "end or on interrupt), with the input's columns.", show_default=False)
RETRY_FAILED = typer.Option(False, "--retry-failed", help="Resend rows that failed.")
RETRY_UNKNOWN = typer.Option(False, "--retry-unknown", help="Resend rows whose outcome is "
                             "unknown (may duplicate).")
LOG_EVERY = typer.Option(100, "--log-every", help="Without a TTY: log every N rows.", min=1)
QUIET = quiet_option("Only a summary line on failure.")
JSON_OUT = json_option("Print the final counts as JSON (with --dry-run: "
                        "the plan).")
AGAIN = typer.Option(False, "--again", help="Send rows an earlier run of this CSV already sent "
                     "(a recurring job); without it they are skipped.")
EXCLUDE = typer.Option(None, "--exclude", help="Skip these recipients this run: a CSV with a "
                       "'to' column, or one per line.", show_default=False)
RATE = typer.Option(None, "--rate", help="This broadcast's share of the App's limit, e.g. "
                    "40/min, 1/s, 500/h (default: setting broadcast_rate, else all of "
                    "rate_limit).", show_default=False)
SPACING = typer.Option("auto", "--spacing", help="auto: one request every window/N; burst: as "
                       "fast as the share allows; or seconds between requests.")
BETWEEN = typer.Option(None, "--between", help="Send only between these hours, e.g. "
                       "08:00-20:00 (may cross midnight); paused outside.", show_default=False)
TZ = typer.Option(None, "--tz", help="Time zone of --between and --at, e.g. Asia/Jakarta "
                  "(default: the system's).", show_default=False)
AT = typer.Option(None, "--at", help='Start at this time, e.g. "2026-12-01 08:00" (the plan is '
                  "shown at once).", show_default=False)


def read_template(template: str | None, template_file: Path | None) -> str | None:
    """``--template`` or the contents of ``--template-file`` (not both)."""
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
