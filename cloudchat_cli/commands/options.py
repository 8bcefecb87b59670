"""Flags shared by commands: one definition of ``--json`` and ``--quiet``.

A command declares them as parameters and hands both to ``output.result.emit``, which prints
the result the same way everywhere (JSON on ``--json``, nothing on ``--quiet``, text for
people otherwise)::

    def limits(ctx: typer.Context, json_out: bool = json_option(),
               quiet: bool = quiet_option()) -> None:
        data = ...
        emit(data, json_out=json_out, quiet=quiet, human=_show)

``help`` says what this command's JSON or silence is when the default sentence is too vague
("One JSON object per event on stdout."); the option names never change. No environment
variable sets either: a script states what it parses.
"""

from __future__ import annotations

from typing import Any

import typer

JSON_HELP = "Machine-readable output."
QUIET_HELP = "Print nothing on success."


def json_option(help: str = JSON_HELP) -> Any:
    """``--json``: the result as JSON on stdout (pretty on a terminal, one line when piped)."""
    return typer.Option(False, "--json", help=help)


def quiet_option(help: str = QUIET_HELP) -> Any:
    """``--quiet`` / ``-q``: nothing on stdout or stderr unless something fails."""
    return typer.Option(False, "--quiet", "-q", help=help)
