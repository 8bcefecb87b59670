"""``cloudchat api METHOD PATH``: any API endpoint through the same core, like ``gh api``."""

from __future__ import annotations

import typer

from cloudchat_cli.output import console

EPILOG = """[bold]Examples[/bold]

  cloudchat api POST messages -f channel=whatsapp -f to=6281234567890 -f text=Halo
  cloudchat api POST messages --input message.json
  cloudchat api POST messages --input - < message.json | jq -r .status

-f key=value sends a string; -F key=value sends a typed JSON value (number, true/false, null,
or JSON), and -F key=@file reads the value from a file; on GET and DELETE, fields become query
parameters. Exit codes as for every command.
"""


def api(
    ctx: typer.Context,
    method: str = typer.Argument(..., help="GET, POST, PUT, PATCH or DELETE.",
                                 show_default=False),
    path: str = typer.Argument(..., help="Path relative to base_url, e.g. messages.",
                               show_default=False),
    field: list[str] = typer.Option([], "--field", "-f", help="String field key=value "
                                    "(repeatable).", show_default=False),
    typed_field: list[str] = typer.Option([], "--typed-field", "-F", help="Typed field "
                                          "key=value (JSON value or @file).", show_default=False),
    input_file: str | None = typer.Option(None, "--input", help="Request body from a file, or - "
                                          "for stdin.", show_default=False),
    no_wait: bool = typer.Option(False, "--no-wait", help="Exit 5 instead of waiting for a "
                                 "rate-limit slot."),
) -> None:
    """Send an authenticated request to any API path and print the JSON response."""
    from cloudchat_cli.output.notify import Notifier
    from cloudchat_cli.services import rawapi

    request = rawapi.build_request(method, path, field, typed_field, input_file)
    session = ctx.obj
    cfg = session.settings()
    client = session.client(notify=Notifier(limit=cfg.rate_limit, window=cfg.rate_window))
    response = rawapi.send(client, request, wait=not no_wait)
    data = response.json()
    if data is not None:
        console.print_json(data)
    elif response.body:
        typer.echo(response.body.decode("utf-8", "replace"))


app = typer.Typer()
app.command("api", epilog=EPILOG)(api)
