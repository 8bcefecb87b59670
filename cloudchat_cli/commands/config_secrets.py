"""``cloudchat config set-key`` / ``delete-key`` / ``set-webhook-secret`` /
``delete-webhook-secret``: the profile's credentials (registered by ``config``)."""

from __future__ import annotations

import typer

from cloudchat_cli.output import console

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


def delete_key(ctx: typer.Context) -> None:
    """Delete the profile's API key from the keyring and the credentials file."""
    _delete(ctx, False)


def set_webhook_secret(
    ctx: typer.Context,
    value: str | None = _NO_ARG,
    insecure_storage: bool = typer.Option(
        False, "--insecure-storage", help="Store in a 0600 file instead of the OS keyring."
    ),
) -> None:
    """Store the profile's webhook secret (whsec_…), read like set-key."""
    _store(ctx, True, insecure_storage, value)


def delete_webhook_secret(ctx: typer.Context) -> None:
    """Delete the profile's webhook secret."""
    _delete(ctx, True)
