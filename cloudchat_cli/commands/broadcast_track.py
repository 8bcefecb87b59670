"""``cloudchat broadcast track``: what was delivered, read or failed, from saved status events."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cloudchat_cli.commands.options import json_option
from cloudchat_cli.output import console

EPILOG = """[bold]Examples[/bold]

  cloudchat webhook listen --save events   # one listener, every broadcast
  cloudchat broadcast customers.csv -t "Halo {name}" --yes
  cloudchat broadcast track customers.csv --events events
  cloudchat broadcast track customers.csv --events events --report hasil.csv
  cloudchat broadcast track customers.csv --events events --json | jq .read

Each run reads only the event files it has not read before (the results are kept in the \
broadcast's journal). With --follow it keeps reading as events arrive, until every message is \
read or failed, or Ctrl-C. Exit 0 (also when --follow is stopped with Ctrl-C: what was read is \
saved), 2 for a missing journal or events directory.
"""


def track(
    ctx: typer.Context,
    file: Path | None = typer.Argument(None, help="The broadcast's CSV file.",
                                       show_default=False),
    events: Path = typer.Option(..., "--events", help="Directory of events saved by `cloudchat "
                                "webhook listen --save`.", show_default=False),
    journal: Path | None = typer.Option(None, "--journal", help="The broadcast's journal "
                                        "(instead of its CSV file).", show_default=False),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading new events until "
                                "every message is read or failed (Ctrl-C stops; exit 0)."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between looks at the "
                                   "directory with --follow.", min=0.05, max=3600),
    stale: str = typer.Option("1h", "--stale", help="List accepted messages without a status "
                              "this long after sending (90s, 30m, 1h, 2d)."),
    report: Path | None = typer.Option(None, "--report", help="Write the per-row CSV with the "
                                       "delivery columns here.", show_default=False),
    json_out: bool = json_option("One JSON object: counts, times, "
                                  "reasons."),
) -> None:
    """Show what a broadcast's messages became: delivered, read, failed, no status yet."""
    from cloudchat_cli.core.durations import parse_duration
    from cloudchat_cli.core.errors import Interrupted
    from cloudchat_cli.output import funnel
    from cloudchat_cli.services.broadcast import tracking

    stale_s = parse_duration(stale, "--stale")
    jr = _open(ctx, file, journal)
    try:
        tracker = tracking.Tracker(jr, warn=console.warn)
        if not follow:
            tracker.scan(events)
        else:
            live = _Display(json_out)
            try:
                tracking.follow(tracker, events, interval=interval, sleep=time.sleep,
                                on_scan=lambda scan: live.update(tracker.summary(stale_s)))
            except (Interrupted, KeyboardInterrupt):
                # Ctrl-C is how --follow is meant to end: every scan is already committed.
                pass
            finally:
                live.stop()
        summary = tracker.summary(stale_s)
        if report is not None:
            rows = tracker.write_report(report, stale_s)
            console.info(f"Report: {rows} row(s) → {report}")
    finally:
        jr.close()
    if json_out:
        console.print_json(summary)
    elif console.stdout_is_tty():
        console.out().print(funnel.renderable(summary))
    else:
        for line in funnel.plain_lines(summary):
            console.out().print(line, markup=False, highlight=False)


def _open(ctx: typer.Context, file: Path | None, journal: Path | None):
    """The broadcast's journal, found like `broadcast` and `broadcast status` find it."""
    from cloudchat_cli.commands.broadcast_runs import journal_of
    from cloudchat_cli.core.errors import UsageError

    explicit = journal is not None
    journal = journal_of(ctx, file, journal)
    if not journal.is_file():
        if explicit:
            raise UsageError(f"no journal at {journal}")
        profile = ctx.obj.settings().profile
        raise UsageError(f"no broadcast of {file} found for profile {profile!r} ({journal})",
                         hint="`cloudchat broadcast status` lists them; or pass --journal PATH")
    from cloudchat_cli.services.broadcast import tracking

    return tracking.open_journal(journal)


class _Display:
    """What --follow shows while it runs: a redrawn funnel on a terminal, a line per change
    when piped, nothing with --json (the object comes at the end)."""

    def __init__(self, json_out: bool):
        self.json_out = json_out
        self.live = None
        self.last = None

    def update(self, summary: dict) -> None:
        from cloudchat_cli.output import funnel

        if self.json_out:
            return
        if console.stdout_is_tty():
            if self.live is None:
                from rich.live import Live

                self.live = Live(console=console.out(), auto_refresh=False, transient=True)
                self.live.start()
            self.live.update(funnel.renderable(summary), refresh=True)
            return
        line = funnel.progress_line(summary)
        if line != self.last:
            self.last = line
            console.out().print(line, markup=False, highlight=False)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
