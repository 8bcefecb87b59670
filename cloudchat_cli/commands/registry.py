"""The command registry: every top-level ``cloudchat`` command, the module that implements it,
and whether it runs until stopped.

How to add a command
--------------------
1. Write ``commands/NAME.py`` with a module-level ``app`` (a Typer). Keep it thin: flags → one
   service call → render → exit code; the use case lives in ``services/``.

   * one command: ``app = typer.Typer(); app.command("NAME")(function)``;
   * subcommands: ``app = command_group(help=...)`` from ``commands/groups.py``. It stays a
     group even with a single subcommand (a plain ``typer.Typer`` with one command and no
     callback silently becomes that command, and ``cloudchat NAME SUB`` stops working);
     ``command_group(default="run")`` makes the bare ``cloudchat NAME ARGS`` run ``run``.
   * ``--json`` / ``--quiet``: ``json_option()`` / ``quiet_option()`` from
     ``commands/options.py``, and print the result with ``output.result.emit``.
2. Add ``"NAME": Command("cloudchat_cli.commands.NAME")`` to ``COMMANDS`` below, at the place
   ``cloudchat --help`` should list it. The module is imported only when the command runs.
3. A (sub)command that runs until stopped (a server, a listener, a long send loop) lists its
   name in ``long_running``: the garbage collector that start-up tuned for a short command
   (``entry.py``) is set back to normal before it runs (``gcpolicy.steady_gc``).
4. Give it ``--help`` examples that run against ``cloudchat sandbox``: ``tests/test_examples.py``
   runs them and ``tests/test_shells.py`` renders every help at 80 columns.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, NamedTuple

import typer


class Command(NamedTuple):  # not a dataclass: this module is on every start-up path
    """Where a top-level command lives and which of its commands run until stopped."""

    module: str  # a module whose ``app`` (a Typer) implements the command
    # Names of the module's (sub)commands that run until stopped; for a single-command module,
    # the command's own name.
    long_running: tuple[str, ...] = ()


# Command name → its entry, in the order ``cloudchat --help`` lists them.
COMMANDS: dict[str, Command] = {
    "send": Command("cloudchat_cli.commands.send"),
    "broadcast": Command("cloudchat_cli.commands.broadcast", long_running=("run",)),
    "webhook": Command("cloudchat_cli.commands.webhook", long_running=("listen",)),
    "optout": Command("cloudchat_cli.commands.optout"),
    "config": Command("cloudchat_cli.commands.config"),
    "api": Command("cloudchat_cli.commands.api"),
    "limits": Command("cloudchat_cli.commands.limits"),
    "sandbox": Command("cloudchat_cli.commands.sandbox", long_running=("serve",)),
    "completion": Command("cloudchat_cli.commands.completion"),
}


def load(name: str, commands: dict[str, Command] | None = None) -> Any:
    """The click command for ``name`` (importing its module now), or None if there is none."""
    entry = (COMMANDS if commands is None else commands).get(name)
    if entry is None:
        return None
    command = typer.main.get_command(importlib.import_module(entry.module).app)
    command.name = name
    for long_name in entry.long_running:
        _steady_gc_first(_find(command, long_name, entry))
    return command


def _find(command: Any, name: str, entry: Command) -> Any:
    subcommands = getattr(command, "commands", None)  # a group (typer vendors its own click)
    found = subcommands.get(name) if subcommands is not None else (
        command if command.name == name else None)
    if found is None:  # a typo here would silently leave a server on start-up GC settings
        raise LookupError(f"{entry.module} has no command {name!r} (COMMANDS long_running)")
    return found


def _steady_gc_first(command: Any) -> None:
    """Make ``command`` restore the steady-state garbage collector before it runs."""
    callback = command.callback
    if getattr(callback, "steady_gc", False):
        return

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        from cloudchat_cli.gcpolicy import steady_gc

        steady_gc()
        return callback(*args, **kwargs)

    run.steady_gc = True  # type: ignore[attr-defined]
    command.callback = run
