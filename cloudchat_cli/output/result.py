"""Print a command's result: JSON on ``--json``, nothing on ``--quiet``, text for people else.

The flags are defined once in ``commands/options.py``; this is the one place that decides what
they mean. ``--json`` wins over ``--quiet`` (a script asking for JSON gets it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cloudchat_cli.output import console

T = TypeVar("T")


def emit(data: T, *, json_out: bool = False, quiet: bool = False,
         human: Callable[[T], None] | None = None) -> None:
    """Print ``data`` as JSON on ``--json``; nothing on ``--quiet``; else ``human(data)``,
    which writes for people (data to stdout, notes to stderr)."""
    if json_out:
        console.print_json(data)
    elif not quiet and human is not None:
        human(data)
