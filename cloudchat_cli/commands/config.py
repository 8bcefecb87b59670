"""``cloudchat config``: profiles, settings, the API key and webhook secret, and ``doctor``."""

from __future__ import annotations

import typer

from cloudchat_cli.output import console

app = typer.Typer(
    help="Profiles, settings and credentials. Every setting shows where its value came from.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

KEY_EPILOG = """[bold]Examples[/bold]

  cloudchat config set-key                     # hidden prompt on a terminal
  printf %s "$CLOUDCHAT_KEY" | cloudchat -p shop config set-key
  cloudchat config set-key --insecure-storage < key.txt   # no keyring
"""


def _kind(webhook: bool):
    from cloudchat_cli.core import credentials

    return credentials.WEBHOOK_SECRET if webhook else credentials.API_KEY


def _store(ctx: typer.Context, webhook: bool, insecure_storage: bool, argv_value: str | None
           ) -> None:
    from cloudchat_cli.commands._secrets import read_secret_from_user, refuse_argv_secret
    from cloudchat_cli.core import credentials

    session = ctx.obj
    kind = _kind(webhook)
    refuse_argv_secret(kind, argv_value)
    profile, _ = session.profile()
    if not insecure_storage:
        credentials.require_keyring(kind, session.env)  # before asking for the secret
    value = read_secret_from_user(kind)
    where = credentials.store_secret(
        kind, profile, value, insecure_storage=insecure_storage, env=session.env
    )
    config = session.config
    if not config.has_profile(profile) or profile not in config.data.get("profiles", {}):
        config.ensure_profile(profile)
        config.save()
    console.info(f"Stored the {kind.label} {credentials.mask(value.strip())} for profile "
                 f"{profile!r} in {where}.")


def _delete(ctx: typer.Context, webhook: bool) -> None:
    from cloudchat_cli.core import credentials

    session = ctx.obj
    kind = _kind(webhook)
    profile, _ = session.profile()
    removed = credentials.delete_secret(kind, profile, env=session.env)
    if removed:
        console.info(f"Deleted the {kind.label} of profile {profile!r} from {', '.join(removed)}.")
    else:
        console.info(f"No stored {kind.label} for profile {profile!r}.")


_NO_ARG = typer.Argument(None, hidden=True, show_default=False)


@app.command("set-key", epilog=KEY_EPILOG)
def set_key(
    ctx: typer.Context,
    value: str | None = _NO_ARG,
    insecure_storage: bool = typer.Option(
        False, "--insecure-storage",
        help="Store in a 0600 file instead of the OS keyring (for machines without one).",
    ),
) -> None:
    """Store the profile's API key (hidden prompt on a TTY, else read from stdin)."""
    _store(ctx, False, insecure_storage, value)


@app.command("delete-key")
def delete_key(ctx: typer.Context) -> None:
    """Delete the profile's API key from the keyring and the credentials file."""
    _delete(ctx, False)


@app.command("set-webhook-secret")
def set_webhook_secret(
    ctx: typer.Context,
    value: str | None = _NO_ARG,
    insecure_storage: bool = typer.Option(
        False, "--insecure-storage", help="Store in a 0600 file instead of the OS keyring."
    ),
) -> None:
    """Store the profile's webhook secret (whsec_…), read like set-key."""
    _store(ctx, True, insecure_storage, value)


@app.command("delete-webhook-secret")
def delete_webhook_secret(ctx: typer.Context) -> None:
    """Delete the profile's webhook secret."""
    _delete(ctx, True)


@app.command("set", epilog="[bold]Example[/bold]\n\n  cloudchat -p shop config set "
             "default_country_code 62")
def set_(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Setting name (see `cloudchat config show`)."),
    value: str = typer.Argument(..., help="New value."),
) -> None:
    """Set a setting in the active profile (creating the profile if needed)."""
    from cloudchat_cli.core import settings

    session = ctx.obj
    profile, _ = session.profile()
    parsed = settings.parse_setting(key, value)
    config = session.config
    config.set(profile, key, parsed)
    config.save()
    console.info(f"{key} = {parsed!r} in profile {profile!r} ({config.path})")


@app.command("unset")
def unset(ctx: typer.Context, key: str = typer.Argument(..., help="Setting name.")) -> None:
    """Remove a setting from the active profile (its default applies again)."""
    from cloudchat_cli.core import settings

    session = ctx.obj
    profile, _ = session.profile()
    settings.check_setting_name(key)
    config = session.config
    if config.unset(profile, key):
        config.save()
        console.info(f"Removed {key} from profile {profile!r}.")
    else:
        console.info(f"{key} was not set in profile {profile!r}.")


@app.command("get")
def get(ctx: typer.Context, key: str = typer.Argument(..., help="Setting name.")) -> None:
    """Print a setting's resolved value (source on stderr)."""
    from cloudchat_cli.core import settings

    session = ctx.obj
    settings.check_setting_name(key)
    item = session.settings().source(key)
    typer.echo(item.shown)
    if console.stderr_is_tty():
        console.info(f"(from {item.describe_source()})")


@app.command("show")
def show(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show every setting of the active profile, its value and where it came from."""
    from cloudchat_cli.services import doctor

    rows = doctor.show_rows(ctx.obj)
    if json_out:
        console.print_json({r["setting"]: {"value": r["value"], "source": r["source"]}
                            for r in rows})
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("source", style="dim")
    for row in rows:
        value = "—" if row["value"] in (None, "") else str(row["value"])
        table.add_row(row["setting"], console.escape(value), console.escape(row["source"]))
    console.out().print(table)


@app.command("profiles")
def profiles(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the profiles; the active one is marked with *."""
    session = ctx.obj
    active, _ = session.profile()
    names = session.config.profiles()
    if json_out:
        console.print_json({"active": active, "profiles": names})
        return
    for name in names:
        typer.echo(f"{'*' if name == active else ' '} {name}")


@app.command("use")
def use(ctx: typer.Context, profile: str = typer.Argument(..., help="Profile name.")) -> None:
    """Make PROFILE the default for later commands."""
    from cloudchat_cli.core import settings
    from cloudchat_cli.core.errors import ConfigError

    settings.check_profile_name(profile)
    config = ctx.obj.config
    if not config.has_profile(profile):
        raise ConfigError(
            f"profile {profile!r} does not exist",
            hint=f"known profiles: {', '.join(config.profiles())}; create it with "
            f"`cloudchat -p {profile} config set base_url URL` or `config set-key`",
        )
    config.data["default_profile"] = profile
    config.save()
    console.info(f"Default profile is now {profile!r}.")


@app.command("path")
def path() -> None:
    """Print the config file path (and, on stderr, the state directory)."""
    from cloudchat_cli.core import paths

    typer.echo(str(paths.config_file()))
    if console.stderr_is_tty():
        console.info(f"state: {paths.state_dir()}")


@app.command("doctor", epilog="[bold]Examples[/bold]\n\n"
             "  cloudchat config doctor             # tests the key; sends "
             "nothing\n"
             "  cloudchat config doctor --offline   # no network\n"
             "  cloudchat --api-key-file shop.key config doctor --json   # a server's key "
             "file")
def doctor_cmd(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
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
