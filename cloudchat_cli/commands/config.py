"""``cloudchat config``: profiles, settings, the API key and webhook secret, and ``doctor``."""

from __future__ import annotations

import typer

from cloudchat_cli.commands import config_doctor, config_secrets
from cloudchat_cli.commands.options import json_option
from cloudchat_cli.output import console

app = typer.Typer(
    help="Profiles, settings and credentials. Every setting shows where its value came from.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

app.command("set-key", epilog=config_secrets.KEY_EPILOG)(config_secrets.set_key)
app.command("delete-key")(config_secrets.delete_key)
app.command("set-webhook-secret")(config_secrets.set_webhook_secret)
app.command("delete-webhook-secret")(config_secrets.delete_webhook_secret)


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
    json_out: bool = json_option(),
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
    json_out: bool = json_option(),
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


app.command("doctor", epilog=config_doctor.DOCTOR_EPILOG)(config_doctor.doctor_cmd)
