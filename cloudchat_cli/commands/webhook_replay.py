"""``cloudchat webhook replay DIR --to URL``: re-post saved events in arrival order."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cloudchat_cli.commands.options import json_option
from cloudchat_cli.commands.webhook_common import failure_code
from cloudchat_cli.output import console

REPLAY_EPILOG = """[bold]Examples[/bold]

  cloudchat webhook replay ./events --to http://127.0.0.1:3000/
  cloudchat webhook replay ./events --to http://127.0.0.1:3000/ --since 2h
  cloudchat webhook replay ./events --to http://127.0.0.1:3000/ --all

Each event is posted byte-exact with the headers CloudChat sent (its signature included), \
oldest first, retried like `trigger`; the first that is still refused stops the replay. \
--id EVT picks events by id. Delivered events are marked in DIR/forward.sqlite. \
Exit 0 all delivered, 6 the app kept answering 5xx, 7 it never answered, 1 another answer \
(or unreadable event files), 2 bad input.
"""


def replay_cmd(
    directory: Path = typer.Argument(..., help="The directory `webhook listen --save` wrote.",
                                     file_okay=False, show_default=False),
    to: str = typer.Option(..., "--to", help="Your webhook endpoint.", show_default=False),
    replay_all: bool = typer.Option(False, "--all/--only-undelivered",
                                    help="Also send events already delivered."),
    since: str | None = typer.Option(
        None, "--since", help="Only events received since: 2h, 3d, 2026-11-26T08:00, or epoch "
        "seconds.", show_default=False),
    ids: list[str] = typer.Option([], "--id", help="Only this event id (repeatable).",
                                  show_default=False),
    no_retry: bool = typer.Option(False, "--no-retry", help="One attempt per event."),
    json_out: bool = json_option("Print the outcome as JSON."),
) -> None:
    """Re-post saved events, byte-exact and with their original signature, in arrival order."""
    from cloudchat_cli.core.errors import CloudChatError, ExitCode
    from cloudchat_cli.services.webhooks import replay
    from cloudchat_cli.services.webhooks.delivery import check_url

    check_url(to)
    cutoff = replay.parse_since(since, time.time()) if since is not None else None
    chosen, unreadable = replay.select(directory, include_delivered=replay_all, since=cutoff,
                                       ids=ids)
    for name in unreadable:
        console.warn(f"{name} is not a complete saved event: skipped")

    def shown(item, attempt, delay) -> None:
        if json_out or (attempt.ok and attempt.number == 1):
            return
        what = (f"HTTP {attempt.status}" if attempt.status is not None
                else f"no answer ({attempt.error})")
        tail = f"; retrying in {delay:g} s" if delay else ""
        console.info(f"{item.meta.get('id') or item.key}: attempt {attempt.number}: {what}{tail}")

    result = replay.replay(directory, chosen, to, retry=not no_retry, on_attempt=shown)
    if json_out:
        console.print_json({"delivered": [e.meta.get("id") for e in result.delivered],
                            "failed": result.failed.meta.get("id") if result.failed else None,
                            "not_sent": result.left, "unreadable": unreadable})
    elif not chosen:
        console.info("nothing to replay (every selected event was delivered already: --all "
                     "sends them again)")
    else:
        for item in result.delivered:
            console.out().print(f"delivered {console.escape(str(item.meta.get('id')))}")
        console.info(f"{len(result.delivered)} of {len(chosen)} event(s) delivered to {to}")
    if result.failed is not None:
        last = result.attempts[-1]
        code = failure_code(last.status)
        raise CloudChatError(
            f"{to} did not accept {result.failed.meta.get('id') or result.failed.key} after "
            f"{len(result.attempts)} attempt(s): "
            + (f"HTTP {last.status} {last.body}" if last.status is not None else str(last.error))
            + f"; {result.left} later event(s) not sent (order is kept)", exit_code=code)
    if unreadable:
        raise typer.Exit(int(ExitCode.FAILURE))
