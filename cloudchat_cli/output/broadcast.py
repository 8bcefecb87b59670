"""How a broadcast looks to people: the ``Reporter`` of ``services/broadcast/usecase.py`` on
stderr, the plan, the dry-run preview and the final summary."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from cloudchat_cli.output import console


class HumanReporter:
    """Draws a run for people on stderr; with ``quiet`` only what must never be silent."""

    def __init__(self, *, quiet: bool = False, log_every: int = 100):
        self.quiet = quiet
        self.log_every = log_every

    def notice(self, kind: str, **data: Any) -> None:
        from cloudchat_cli.services.broadcast import runs

        if kind == "up_to_date":  # even with --quiet: a recurring job must not do nothing silently
            last = data["last_sent_at"]
            done = f"already sent on {runs.day(last)}" if last else \
                "already run (nothing was sent)"
            console.info(f"{done}: nothing to do; add --again to send it again")
        elif kind == "already_received":  # even with --quiet, for the same reason
            held = data["held"]
            console.info(f"all {held.already_sent} row(s) already received this exact message "
                         f"(last on {runs.day(held.last_sent_at)}): nothing to do; add --again "
                         "to send it again")
        elif kind == "invalid":  # the refusal's evidence: shown with --quiet too
            show_invalid(data["plan"])
        elif kind == "report":
            if data["note"]:
                console.warn(data["note"])
            if not (self.quiet or data["after_nothing_to_do"]):
                console.info(f"Report: {data['path']} ({data['rows']} rows)")
        elif not self.quiet:
            self._chatty(kind, data)

    def _chatty(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "archived":
            console.info(f"The previous broadcast of this file was finished; its journal is "
                         f"kept as {data['path']}.")
        elif kind == "replaced":
            console.info("An earlier run of this file was never confirmed (nothing was sent): "
                         "starting afresh.")
        elif kind == "crashed":
            console.warn(f"{data['rows']} row(s) were being sent when the last run stopped; "
                         "they are marked unknown (--retry-unknown resends them)")
        elif kind == "requeued":
            states = " and ".join(s.replace("_", " ") for s in data["states"])
            console.info(f"Resending {data['rows']} {states} row(s).")
        elif kind == "plan":
            show_plan(data["plan"], data["counts"], data["etiquette"], resumed=data["resumed"])
            show_withheld(data["held"], data["counts"])
            if data["plan"].invalid:
                show_invalid(data["plan"])
        elif kind == "nothing_left":
            console.info("Nothing left to send.")
        elif kind == "stopping":
            console.info("Stopping: letting requests in flight finish (Ctrl-C again to quit "
                         "at once)…")
        elif kind == "stopping_now":
            console.info("Stopping at once: not waiting for the requests in flight (their rows "
                         "are marked unknown; --retry-unknown resends them)…")

    @contextlib.contextmanager
    def checking(self, size: int) -> Iterator[Callable[[int], None] | None]:
        if self.quiet or not console.stderr_is_tty() or size <= 1024 * 1024:
            yield None
            return
        status = console.err().status("Checking rows…")
        status.start()
        try:
            yield lambda n: status.update(f"Checking rows… {n:,}")
        finally:
            status.stop()

    def confirm(self, pending: int) -> bool | None:
        if not (console.stdin_is_tty() and console.stderr_is_tty()):
            return None
        return console.confirm(f"Send {pending} message(s)?")

    def progress(self, pending: int, etiquette: Any):
        from cloudchat_cli.output.progress import BroadcastProgress

        return BroadcastProgress(pending, quiet=self.quiet, log_every=self.log_every,
                                 schedule=etiquette)


def show_invalid(plan) -> None:
    for _row, error in plan.errors:
        console.err().print(f"  [red]✗[/red] {console.escape(error)}")
    if plan.invalid > len(plan.errors):
        console.info(f"  … and {plan.invalid - len(plan.errors)} more invalid row(s)")


def show_plan(plan, counts, etiquette, *, resumed: bool) -> None:
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


def show_withheld(held, counts) -> None:
    """The plan's lines for rows this run leaves out: history, opt-outs, --exclude."""
    from cloudchat_cli.services.broadcast import runs

    if held.opted_out:
        console.info(f"{held.opted_out} on the opt-out list — skipped")
    if held.excluded:
        console.info(f"{held.excluded} excluded by --exclude — skipped")
    if held.already_sent:
        when = runs.day(held.last_sent_at)
        if held.again:
            console.info(f"--again: {held.already_sent} already received this exact message "
                         f"on {when} and will receive it again")
        else:
            console.info(f"{held.already_sent} already received this exact message on {when} "
                         f"— skipped; {counts['pending']} new row(s) will be sent "
                         "(--again sends to all)")


def show_dry_run(dry) -> None:
    """A dry run's plan and the first rendered messages (stdout)."""
    show_plan(dry.plan, dry.counts, dry.etiquette, resumed=False)
    show_withheld(dry.held, dry.counts)
    if dry.plan.invalid:
        show_invalid(dry.plan)
    for row, payload in dry.shown:
        body = payload.get("text") or payload.get("media", {}).get("url", "")
        console.out().print(
            f"[bold]row {row}[/bold] → {console.escape(payload['channel'])} "
            f"{console.escape(payload['to'])}:\n{console.escape(body)}\n"
        )


def show_summary(counts: dict[str, int], line: str, *, quiet: bool) -> None:
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


def show_row_errors(errors: list[tuple[int, str]]) -> None:
    for row, error in errors:
        console.err().print(f"  [red]✗[/red] row {row}: {console.escape(error)}")
