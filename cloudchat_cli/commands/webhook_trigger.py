"""``cloudchat webhook trigger URL``: the use case is ``services/webhooks/trigger.py``."""

from __future__ import annotations

from pathlib import Path

import typer

from cloudchat_cli.commands.completion import complete_channel
from cloudchat_cli.commands.options import json_option
from cloudchat_cli.commands.webhook_common import (
    NO_SECRET_ARG,
    SECRET_FILE,
    failure_code,
    load_secrets,
)
from cloudchat_cli.output import console

EPILOG = ("[bold]Example[/bold]\n\n  cloudchat webhook trigger http://127.0.0.1:3000/hook "
          "--set data.text=Halo")


def trigger_cmd(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="Your webhook endpoint.", show_default=False),
    event: str = typer.Option("message.received", "--event", "-e",
                              help="message.received or message.status."),
    channel: str = typer.Option("whatsapp", "--channel", "-c", autocompletion=complete_channel,
                                help="Channel of the event."),
    sets: list[str] = typer.Option([], "--set", help="Override a field: data.text=Halo "
                                   "(repeatable; JSON values allowed).", show_default=False),
    no_retry: bool = typer.Option(False, "--no-retry", help="Send once; no 2/4/8 s retries."),
    secret_file: list[Path] = SECRET_FILE,
    secret: str | None = NO_SECRET_ARG,
    json_out: bool = json_option("Print the attempts as JSON."),
) -> None:
    """Build, sign and POST a realistic event the way CloudChat does (5 s timeout, retries)."""
    from cloudchat_cli.core.errors import CloudChatError
    from cloudchat_cli.services.webhooks import trigger

    trigger.check(url)
    request = trigger.TriggerRequest(url=url, secret=load_secrets(ctx, secret_file, secret)[0],
                                     event=event, channel=channel, sets=sets,
                                     retry=not no_retry)
    done = trigger.trigger(request, on_attempt=None if json_out else _shown)
    if json_out:
        console.print_json({"event": done.event, "attempts": [
            {"attempt": a.number, "status": a.status, "ms": round(a.elapsed * 1000, 1),
             "error": a.error} for a in done.attempts]})
    if done.delivered:
        if not json_out:
            console.out().print(f"Delivered {done.event['id']} ({event}) to {url}")
        return
    raise CloudChatError(done.describe_failure(), exit_code=failure_code(done.last.status))


def _shown(attempt, delay) -> None:
    what = (f"HTTP {attempt.status}" if attempt.status is not None
            else f"no answer ({attempt.error})")
    tail = f"; retrying in {delay:g} s" if delay else ""
    console.info(f"attempt {attempt.number}: {what} in {attempt.elapsed * 1000:.0f} ms{tail}")
