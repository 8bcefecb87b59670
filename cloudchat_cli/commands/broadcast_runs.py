"""``cloudchat broadcast status`` and ``cloudchat broadcast discard``: a broadcast's runs."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cloudchat_cli.commands.options import json_option
from cloudchat_cli.output import console


def status(
    ctx: typer.Context,
    journal: Path | None = typer.Argument(
        None, help="A journal file, or a broadcast's CSV/.xlsx (its runs) (default: every "
        "run, newest first).", show_default=False),
    json_out: bool = json_option(),
    limit: int = typer.Option(20, "--limit", help="Show at most this many runs.", min=1),
) -> None:
    """List broadcast runs: start/end, profile, CSV, template, counts, state."""
    from cloudchat_cli.core.errors import CloudChatError, UsageError
    from cloudchat_cli.services.broadcast import runs

    if journal is not None and not journal.is_file():
        raise UsageError(f"no journal at {journal}")
    one = journal is not None and runs.is_journal(journal)
    if one:
        items = [runs.describe(journal)]
    else:
        if journal is None:
            found = runs.all_journals()
        else:  # the broadcast's CSV or workbook: that broadcast's runs
            session = ctx.obj
            cfg = session.settings()
            api = "sandbox" if session.options.sandbox else cfg.base_url
            found = runs.runs_of(journal, cfg.profile, api)
            if not found:
                raise UsageError(
                    f"no broadcast of {journal} (profile {cfg.profile}) has run yet",
                    hint="`cloudchat broadcast status` lists every run")
        items = []
        for path in found[:limit]:
            try:
                items.append(runs.describe(path))
            except CloudChatError as exc:  # one damaged or vanished journal hides no other
                console.warn(f"{path}: {exc.message}")
    if json_out:
        console.print_json(items[0] if one else items)
        return
    if not items:
        console.info("No broadcasts yet.")
        return
    for item in items:
        console.out().print(_describe(item))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "—"


def _describe(item: dict) -> str:
    from cloudchat_cli.services.broadcast.journal import WITHHELD

    esc = console.escape
    running = (f"running (PID {item['running_pid']}): {item['sending']} in flight"
               if item["running_pid"] else item["state"])
    withheld = "".join(f", {item[s]} {s.replace('_', ' ')}" for s in WITHHELD if item[s])
    return (
        f"[bold]{esc(item['csv'] or '?')}[/bold]  {running}\n"
        f"  started {_when(item['started_at'])}, finished {_when(item['finished_at'])}"
        f"{', archived ' + _when(item['archived_at']) if item['archived_at'] else ''}; "
        f"profile {esc(item['profile'] or '?')}, template {esc(item['template_sha256'] or '?')}\n"
        f"  {item['sent']} sent, {item['failed']} failed, {item['unknown']} unknown, "
        f"{item['pending']} pending, {item['invalid']} invalid, {item['skipped']} skipped"
        f"{withheld}\n  {esc(item['journal'])}"
    )


def journal_of(ctx: typer.Context, file: Path | None, journal: Path | None) -> Path:
    """The journal a broadcast command means: ``--journal PATH``, or the default journal of
    FILE for this profile and API (found as `broadcast FILE` finds it)."""
    from cloudchat_cli.core.errors import UsageError
    from cloudchat_cli.services.broadcast import service
    from cloudchat_cli.services.broadcast.plan import BroadcastOptions

    if (file is None) == (journal is None):
        raise UsageError("give the broadcast's CSV file or --journal PATH (one of them)")
    if journal is not None:
        return journal
    session = ctx.obj
    cfg = session.settings()
    api = "sandbox" if session.options.sandbox else cfg.base_url
    return service.default_journal_path(BroadcastOptions(csv_path=file), cfg.profile, api)


def discard(
    ctx: typer.Context,
    file: Path | None = typer.Argument(None, help="The broadcast's CSV file.",
                                       show_default=False),
    journal: Path | None = typer.Option(None, "--journal", help="The journal to discard.",
                                        show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Drop a broadcast (unfinished or not): the next run of its CSV starts afresh.

    One that sent something is archived, never deleted: it keeps protecting its recipients."""
    from cloudchat_cli.core.errors import Interrupted, UsageError
    from cloudchat_cli.services.broadcast import runs

    journal = journal_of(ctx, file, journal)
    held = runs.hold_for_discard(journal)
    try:
        c = held.counts
        console.info(
            f"{held.meta.get('csv_path', '?')}: {c['sent']} sent, {c['failed']} failed, "
            f"{c['unknown']} unknown, {c['pending']} pending ({held.path})")
        action = ("archive it (it sent messages: they keep protecting their recipients)"
                  if held.keeps_history else "delete it (nothing was sent)")
        if not yes:
            if not (console.stdin_is_tty() and console.stderr_is_tty()):
                raise UsageError("discarding a broadcast needs confirmation",
                                 hint="add --yes (no terminal to ask on)")
            if not console.confirm(f"Discard this broadcast: {action}?"):
                raise Interrupted("not confirmed; nothing was discarded")
    except BaseException:
        held.release()
        raise
    archived = runs.discard(held)
    console.info(f"Discarded: archived as {archived}" if archived else
                 "Discarded: the journal was deleted (nothing had been sent).")
