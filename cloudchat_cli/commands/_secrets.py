"""How a secret reaches a command: never from argv; a hidden prompt on a terminal, else stdin.

This is command-line policy, so it lives with the commands; ``core/credentials.py`` only finds,
stores and deletes secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.output import console

if TYPE_CHECKING:
    from cloudchat_cli.core.credentials import Kind


def refuse_argv_secret(kind: Kind, value: str | None) -> None:
    """A secret typed as an argument is refused (never echoed: it is already in `ps` and the
    shell history, so the hint suggests rotating it)."""
    if value is None:
        return
    raise UsageError(
        f"the {kind.label} is never taken on the command line (it would show in `ps` and your "
        "shell history)",
        hint=f"use {kind.file_flag} PATH, {kind.env}, or `{kind.set_command}` (which reads a "
        "hidden prompt or stdin); consider rotating the one you just typed",
    )


def read_secret_from_user(kind: Kind, *, stdin: TextIO | None = None,
                          prompt: bool | None = None) -> str:
    """Read a secret: a hidden prompt on a TTY, else one line from stdin. Never from argv."""
    if stdin is None:
        stdin = console.stdin()
        interactive = console.stdin_is_tty() if prompt is None else prompt
    else:
        interactive = stdin.isatty() if prompt is None else prompt
    if interactive:
        import getpass

        try:
            value = getpass.getpass(f"Paste the {kind.label} (input hidden): ")
        except EOFError:
            value = ""
    else:
        value = stdin.read(64 * 1024)
    if not value.strip():
        raise UsageError(
            f"no {kind.label} given",
            hint=f"paste it at the prompt, or pipe it: `printf %s \"$KEY\" | {kind.set_command}`",
        )
    return value
