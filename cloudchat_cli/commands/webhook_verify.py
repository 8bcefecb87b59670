"""``cloudchat webhook verify`` and ``sign``: check or make X-CloudChat-Signature."""

from __future__ import annotations

from pathlib import Path

import typer

from cloudchat_cli.commands.options import json_option
from cloudchat_cli.commands.webhook_common import (
    NO_SECRET_ARG,
    SECRET_FILE,
    SECRET_NOTE,
    load_secrets,
    read_body,
)
from cloudchat_cli.output import console

VERIFY_EPILOG = """[bold]Examples[/bold]

  cloudchat webhook verify body.json --signature "$SIGNATURE"
  cat body.json | cloudchat webhook verify - --signature "sha256=$SIGNATURE"
  cloudchat webhook verify --request captured.http   # raw request (nc)
  cloudchat webhook verify --dir ./events   # what `listen --save` kept

With --dir, --max-age compares each event's timestamp with the time it was received (saved \
with it); for a body, a request or a live check, with now.

Exit 0 valid, 1 invalid (or stale or from the future with --max-age), 2 unreadable input, \
a malformed signature, or no secret.

""" + SECRET_NOTE


def verify_cmd(
    ctx: typer.Context,
    body_file: str | None = typer.Argument(
        None, help="File with the exact body bytes, or - for stdin.", show_default=False),
    signature: str | None = typer.Option(
        None, "--signature", "-s", help="The X-CloudChat-Signature value (hex, sha256=…, or "
        "base64).", show_default=False),
    request: Path | None = typer.Option(
        None, "--request", help="A raw captured HTTP request (headers, blank line, body).",
        show_default=False),
    directory: Path | None = typer.Option(
        None, "--dir", help="Verify every event saved by `webhook listen --save DIR`.",
        show_default=False),
    max_age: float | None = typer.Option(
        None, "--max-age", help="Also require the body's timestamp to be at most this old (s) "
        "and at most 5 minutes in the future: at the time it was received for --dir, else now.",
        show_default=False, min=0),
    secret_file: list[Path] = SECRET_FILE,
    secret: str | None = NO_SECRET_ARG,
    json_out: bool = json_option(),
) -> None:
    """Check captured webhook bodies against X-CloudChat-Signature."""
    from cloudchat_cli.core.errors import ExitCode, UsageError
    from cloudchat_cli.services.webhooks import verifying

    modes = sum(x is not None for x in (request, directory)) + (
        1 if body_file is not None or signature is not None else 0)
    if modes != 1:
        raise UsageError("give exactly one of: BODY_FILE --signature SIG, --request FILE, "
                         "--dir DIR")
    secrets = load_secrets(ctx, secret_file, secret)
    if directory is not None:
        results = verifying.verify_dir(directory, secrets, max_age=max_age)
        _show_dir(results, json_out)
        if not all(r.valid for r in results):
            raise typer.Exit(int(ExitCode.FAILURE))
        return
    if request is not None:
        result = verifying.verify_request_file(request, secrets, max_age=max_age)
    else:
        if signature is None:
            raise UsageError("--signature is required with a BODY_FILE")
        result = verifying.verify_body(read_body(body_file), signature, secrets,
                                       max_age=max_age)
    _show_result(result, json_out)
    if not result.valid:
        raise typer.Exit(int(ExitCode.FAILURE))


def _show_result(result, json_out: bool) -> None:
    from cloudchat_cli.output.webhooks import verify_json, verify_line

    if json_out:
        console.print_json(verify_json(result))
        return
    if result.valid:
        which = (f" (secret {result.matched + 1} of {result.secrets})"
                 if result.secrets > 1 else "")
        console.out().print(f"[green]✓ valid signature[/green]{which}")
        console.out().print(console.escape(verify_line(result)))
    else:
        console.err().print(f"[red]✗ {console.escape(result.reason)}[/red]")
        if result.event is not None or result.body_preview:
            console.info(verify_line(result) or result.body_preview)


def _show_dir(results, json_out: bool) -> None:
    if json_out:
        from cloudchat_cli.output.webhooks import verify_json

        console.print_json([verify_json(r) for r in results])
        return
    from rich.table import Table

    from cloudchat_cli.core.errorbody import one_line

    table = Table(box=None, pad_edge=False)
    for column in ("file", "event", "id", "result"):
        table.add_column(column)
    for r in results:
        mark = "[green]valid[/green]" if r.valid else f"[red]{console.escape(r.reason)}[/red]"
        table.add_row(console.escape(r.source), console.escape(one_line(r.event_name or "?", 40)),
                      console.escape(one_line(r.event_id or "?", 80)), mark)
    console.out().print(table)
    bad = sum(1 for r in results if not r.valid)
    console.info(f"{len(results)} event(s): {len(results) - bad} valid, {bad} invalid")


def sign_cmd(
    ctx: typer.Context,
    body_file: str | None = typer.Argument(None, help="Body file, or - for stdin.",
                                           show_default=False),
    secret_file: list[Path] = SECRET_FILE,
    secret: str | None = NO_SECRET_ARG,
) -> None:
    """Print the X-CloudChat-Signature for a body (to test a receiver by hand)."""
    from cloudchat_cli.services.webhooks.signature import sign

    secrets = load_secrets(ctx, secret_file, secret)
    typer.echo(sign(secrets[0], read_body(body_file)))
