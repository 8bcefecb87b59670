"""``cloudchat optout add|remove|list|import|export``: the profile's opt-out list."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from cloudchat_cli.commands.completion import complete_channel
from cloudchat_cli.commands.groups import command_group
from cloudchat_cli.commands.options import json_option, quiet_option
from cloudchat_cli.output import console
from cloudchat_cli.output.result import emit

EPILOG = """[bold]Examples[/bold]

  cloudchat optout add 6281234567801 --note "replied STOP"
  cloudchat optout add @alice --channel tg
  cloudchat optout list --json
  cloudchat optout import berhenti.csv   # a 'to' column, or one per line
  cloudchat optout export > optout.csv
  cloudchat webhook listen --optout-keywords STOP,BERHENTI   # as they reply

Broadcasts skip listed recipients (counted as opted_out); `send` to one refuses (exit 2) \
unless --ignore-optout. One list per profile, in the state directory.
"""

app = command_group(help="Recipients who must not be messaged (one list per profile).",
                    epilog=EPILOG, no_args_is_help=True)

CHANNEL = typer.Option(None, "--channel", "-c", autocompletion=complete_channel,
                       help="Channel (default: the profile's).", show_default=False)


def _open(ctx: typer.Context):
    from cloudchat_cli.services.optout import OptoutList

    cfg = ctx.obj.settings()
    return OptoutList(cfg.profile, cfg.default_country_code), cfg


@app.command("add")
def add(
    ctx: typer.Context,
    to: str = typer.Argument(..., help="The recipient (normalised as `send` would).",
                             show_default=False),
    channel: str | None = CHANNEL,
    note: str = typer.Option("", "--note", help="Why (shown by list and export)."),
    quiet: bool = quiet_option(),
) -> None:
    """Put a recipient on the opt-out list."""
    lst, cfg = _open(ctx)
    try:
        ch, norm, new = lst.add(channel or cfg.default_channel, to, note)
    finally:
        lst.close()
    emit(f"Added {ch} {norm} to the opt-out list of profile {cfg.profile}." if new else
         f"{ch} {norm} was already on the opt-out list.", quiet=quiet, human=console.info)


@app.command("remove")
def remove(
    ctx: typer.Context,
    to: str = typer.Argument(..., help="The recipient.", show_default=False),
    channel: str | None = CHANNEL,
    quiet: bool = quiet_option(),
) -> None:
    """Take a recipient off the opt-out list (exit 2 if it was not on it)."""
    from cloudchat_cli.core.errors import UsageError

    lst, cfg = _open(ctx)
    try:
        ch, norm, gone = lst.remove(channel or cfg.default_channel, to)
    finally:
        lst.close()
    if not gone:
        raise UsageError(f"{ch} {norm} is not on the opt-out list of profile {cfg.profile}")
    emit(f"Removed {ch} {norm} from the opt-out list.", quiet=quiet, human=console.info)


@app.command("list")
def list_cmd(ctx: typer.Context, json_out: bool = json_option("A JSON array.")) -> None:
    """Show the opt-out list."""
    lst, _cfg = _open(ctx)
    try:
        entries = [{"channel": e.channel, "to": e.recipient, "added_at": e.added_at,
                    "note": e.note} for e in lst.entries()]
    finally:
        lst.close()
    emit(entries, json_out=json_out, human=_show)


def _show(entries: list[dict]) -> None:
    if not entries:
        console.info("The opt-out list is empty.")
    for e in entries:
        when = time.strftime("%Y-%m-%d", time.localtime(e["added_at"]))
        note = f"  {console.escape(e['note'])}" if e["note"] else ""
        console.out().print(f"{e['channel']}\t{console.escape(e['to'])}\t{when}{note}",
                            highlight=False)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A CSV with a 'to' column (optional channel, note), "
                                "or one recipient per line.", show_default=False),
    channel: str | None = CHANNEL,
    quiet: bool = quiet_option(),
) -> None:
    """Add every recipient of a file (all or nothing: a bad line adds none)."""
    from cloudchat_cli.services.optout import read_list_file

    lst, cfg = _open(ctx)
    try:
        added, already = lst.import_rows(read_list_file(file, channel or cfg.default_channel))
    finally:
        lst.close()
    emit(f"Imported {added} new recipient(s) ({already} already listed).", quiet=quiet,
         human=console.info)


@app.command("export")
def export_cmd(ctx: typer.Context) -> None:
    """Write the list as CSV (channel,to,added_at,note) to stdout."""
    from cloudchat_cli.services.optout import export_csv

    lst, _cfg = _open(ctx)
    try:
        export_csv(lst.entries(), sys.stdout)
    finally:
        lst.close()
