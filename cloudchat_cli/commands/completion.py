"""Shell completion: ``cloudchat completion bash|zsh|fish`` and the value completers."""

from __future__ import annotations

import typer

SHELLS = ("bash", "zsh", "fish")


def complete_channel(incomplete: str) -> list[str]:
    """Channel names (and their short aliases) for --channel."""
    from cloudchat_cli.core.channels import ALIASES, CHANNELS

    word = incomplete.lower()
    names = [c for c in CHANNELS if c.startswith(word)]
    return names or [a for a in ALIASES if a.startswith(word)]


def complete_profile(incomplete: str) -> list[str]:
    """Profile names from the config file for --profile (nothing if it is unreadable)."""
    try:
        from cloudchat_cli.core.settings import load_config

        names = load_config().profiles()
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [name for name in names if name.startswith(incomplete)]


def script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="cloudchat", complete_var="_CLOUDCHAT_COMPLETE",
                                 shell=shell)


def completion(
    shell: str = typer.Argument(..., help="bash, zsh or fish.", show_default=False,
                                autocompletion=lambda incomplete: [
                                    s for s in SHELLS if s.startswith(incomplete)]),
) -> None:
    """Print the completion script for a shell (see README: Shell completion)."""
    from cloudchat_cli.core.errors import UsageError

    if shell not in SHELLS:
        raise UsageError(f"unknown shell {shell!r}: use bash, zsh or fish")
    typer.echo(script(shell), nl=False)


app = typer.Typer()
app.command("completion")(completion)
