"""``cloudchat config doctor``: is everything a send needs in place (registered by ``config``)."""

from __future__ import annotations

import typer

from cloudchat_cli.commands.options import json_option
from cloudchat_cli.output import console

DOCTOR_EPILOG = ("[bold]Examples[/bold]\n\n"
                 "  cloudchat config doctor             # tests the key; sends nothing\n"
                 "  cloudchat config doctor --offline   # no network\n"
                 "  cloudchat --api-key-file shop.key config doctor --json   # a server's key "
                 "file")


def doctor_cmd(
    ctx: typer.Context,
    json_out: bool = json_option(),
    offline: bool = typer.Option(
        False, "--offline", help="Do not contact base_url (the key is not tested)."
    ),
) -> None:
    """Check config, keyring, the key and the server; exit 1 if a send could not work."""
    from cloudchat_cli.output.notify import Notifier
    from cloudchat_cli.services import doctor

    checks = doctor.run_checks(ctx.obj, probe=not offline, notify=Notifier())
    if json_out:
        console.print_json([{"check": c.name, "ok": c.ok, "status": c.status,
                             "detail": c.detail} for c in checks])
    else:
        marks = {"ok": "[green]ok[/green]  ", "warn": "[yellow]WARN[/yellow]",
                 "fail": "[red]FAIL[/red]"}
        out = console.out()
        for check in checks:
            out.print(f"{marks[check.status]} [bold]{check.name}[/bold]: "
                      f"{console.escape(check.detail)}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
