"""Shell completion: ``cloudchat completion bash|zsh|fish``, ``completion install``, and the
value completers."""

from __future__ import annotations

import typer

from cloudchat_cli.commands.groups import command_group

SHELLS = ("bash", "zsh", "fish")

EPILOG = """[bold]Examples[/bold]

  cloudchat completion install zsh        # into a directory on your $fpath
  cloudchat completion install bash       # bash-completion's user directory
  cloudchat completion install fish       # ~/.config/fish/completions
"""


def complete_channel(incomplete: str) -> list[str]:
    """Channel names (and their short aliases) for --channel."""
    from cloudchat_cli.core.channels import complete

    return complete(incomplete)


def complete_profile(incomplete: str) -> list[str]:
    """Profile names from the config file for --profile (nothing if it is unreadable)."""
    try:
        from cloudchat_cli.core.settings import load_config

        names = load_config().profiles()
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [name for name in names if name.startswith(incomplete)]


def _complete_shell(incomplete: str) -> list[str]:
    return [s for s in SHELLS if s.startswith(incomplete)]


def _check(shell: str) -> str:
    from cloudchat_cli.core.errors import UsageError

    if shell not in SHELLS:
        raise UsageError(f"unknown shell {shell!r}: use bash, zsh or fish")
    return shell


def script(shell: str) -> str:
    """The completion script for ``shell``: ours for zsh (it completes on the first TAB when
    autoloaded from fpath), Typer's for bash and fish."""
    from cloudchat_cli.services.completion import ZSH_SCRIPT

    if shell == "zsh":
        return ZSH_SCRIPT
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="cloudchat", complete_var="_CLOUDCHAT_COMPLETE",
                                 shell=shell)


app = command_group(
    default="print",
    help="Shell completion: print the script for a shell, or install it for your user.",
    epilog=EPILOG,
    no_args_is_help=True,
)


@app.command("print", hidden=True, epilog=EPILOG)
def print_script(
    shell: str = typer.Argument(..., help="bash, zsh or fish.", show_default=False,
                                autocompletion=_complete_shell),
) -> None:
    """Print the completion script for a shell (see README: Shell completion)."""
    typer.echo(script(_check(shell)), nl=False)


@app.command("install")
def install(
    shell: str = typer.Argument(..., help="bash, zsh or fish.", show_default=False,
                                autocompletion=_complete_shell),
) -> None:
    """Write the completion script into your user's completion directory for the shell."""
    from cloudchat_cli.output import console
    from cloudchat_cli.services.completion import install as do_install

    done = do_install(_check(shell), script(shell))
    console.info(f"Wrote the {shell} completion script to {done.path}")
    for note in done.notes:
        console.info(note)
