"""What the ``webhook`` subcommands share: where the secret comes from, reading a body."""

from __future__ import annotations

from pathlib import Path

import typer

from cloudchat_cli.output import console

SECRET_FILE = typer.Option(
    [], "--secret-file", help="Read the webhook secret from this file: one secret per line "
    "(two lines during a rotation); repeatable. Default: the environment, else the keyring.",
    dir_okay=False, show_default=False)
SECRET_NOTE = """The secret: --secret-file, else CLOUDCHAT_WEBHOOK_SECRET (exactly one secret; two \
separated by a newline during a rotation) or CLOUDCHAT_WEBHOOK_SECRET_FILE, else the profile's \
(`cloudchat config set-webhook-secret`). Spaces and commas are part of a secret.
"""
NO_SECRET_ARG = typer.Option(None, "--secret", hidden=True, show_default=False)


def load_secrets(ctx: typer.Context, secret_file: list[Path], argv_value: str | None) -> list[str]:
    """The configured webhook secret(s), refusing one typed on the command line."""
    from cloudchat_cli.commands._secrets import refuse_argv_secret
    from cloudchat_cli.core import credentials

    refuse_argv_secret(credentials.WEBHOOK_SECRET, argv_value)
    return ctx.obj.webhook_secrets(secret_file)


def read_body(body_file: str | None) -> bytes:
    from cloudchat_cli.core.errors import UsageError

    if body_file in (None, "-"):
        if body_file is None and console.stdin_is_tty():
            raise UsageError("give a BODY_FILE, '-' for stdin, --request FILE or --dir DIR")
        return console.stdin().buffer.read()
    try:
        return Path(body_file).read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{body_file} is a directory (did you mean --dir?)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {body_file}: {exc.strerror}") from None


def failure_code(status: int | None):
    """The exit code of a receiver that did not take an event: 7 no answer, 6 a 5xx, else 1."""
    from cloudchat_cli.core.errors import ExitCode

    return (ExitCode.NETWORK if status is None
            else ExitCode.SERVER if status >= 500 else ExitCode.FAILURE)
