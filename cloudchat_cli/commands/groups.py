"""The Typer group and command classes ``cloudchat`` is built from.

* ``LazyGroup``: the root; it lists the commands of ``commands/registry.py`` and imports a
  command's module only when that command is needed.
* ``command_group()``: the Typer app for a command with subcommands; it never collapses.
* ``DefaultCommandGroup`` / ``default_group()``: a group whose bare form runs a default
  command (``broadcast FILE``, ``sandbox``).
* ``NumericArgsCommand``: a command whose arguments may be negative numbers.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from cloudchat_cli.commands import registry

# Typer adds these to every app built with add_completion=True (the default); they would edit
# ~/.bashrc without asking. `cloudchat completion` is the one way to get completion.
TYPER_COMPLETION_PARAMS = ("install_completion", "show_completion")
_NEGATIVE_NUMBER = re.compile(r"^-[0-9]+$")
_MARK = "\x00"  # never in argv (C strings), so it cannot collide with a real argument


class DefaultCommandGroup(TyperGroup):
    """Arguments that do not start with a subcommand name go to the ``default`` command,
    ``--help`` included: its help is the useful one (its epilog names the subcommands)."""

    default = "run"

    def parse_args(self, ctx, args):
        if not args or args[0] not in self.commands:
            args = [self.default, *args]
        return super().parse_args(ctx, args)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if name == self.default and command is not None:
            _speak_as_group(command)
        return command


def _speak_as_group(command) -> None:
    """The default command is the group to its users: usage lines and "Try … -h" say
    ``cloudchat broadcast``, never the internal ``cloudchat broadcast run``."""
    base = command.context_class
    if getattr(base, "_as_group", False):
        return

    class GroupNamedContext(base):
        _as_group = True

        @property
        def command_path(self) -> str:
            return self.parent.command_path if self.parent is not None else super().command_path

    command.context_class = GroupNamedContext


def default_group(name: str) -> type[DefaultCommandGroup]:
    return type(f"Default{name.title()}Group", (DefaultCommandGroup,), {"default": name})


def command_group(*, default: str | None = None, **settings: Any) -> typer.Typer:
    """A Typer app for a command with subcommands, which stays a group whatever their number.

    Typer turns an app with exactly one command and no callback into that command, so
    ``cloudchat NAME SUB`` would silently become ``cloudchat NAME`` the day a group is down to
    one subcommand. A do-nothing callback keeps it a group. ``default`` names the subcommand
    the bare form runs (``cloudchat broadcast FILE`` runs ``broadcast run FILE``).
    """
    settings.setdefault("rich_markup_mode", "rich")
    settings.setdefault("add_completion", False)  # `cloudchat completion`, never ~/.bashrc
    return typer.Typer(cls=default_group(default) if default else TyperGroup,
                       callback=_keep_group, **settings)


def _keep_group() -> None:
    # The callback whose presence keeps a one-subcommand app a group; it has nothing to do.
    return None


class LazyGroup(TyperGroup):
    """The root group: a command's module is imported only when it is needed.

    ``cloudchat send`` then loads the send command alone, not broadcast, webhook, sandbox…;
    ``--help`` and completion of command names load them all (they need their help texts).
    """

    def list_commands(self, ctx):
        return list(registry.COMMANDS)

    def get_command(self, ctx, name):
        command = registry.load(name)
        if command is not None:
            _drop_typer_completion(command)
        return command


def _drop_typer_completion(command) -> None:
    command.params = [p for p in command.params if p.name not in TYPER_COMPLETION_PARAMS]
    for sub in getattr(command, "commands", {}).values():
        _drop_typer_completion(sub)


class NumericArgsCommand(TyperCommand):
    """A command whose arguments may be negative numbers: a Telegram group's chat id is
    ``-1001234567890``, and ``send -1001234567890 Hi`` must not read it as option ``-1``.

    A token that is only a minus and digits, and not the value of an option, is hidden from
    the option parser and given back to the argument afterwards."""

    def parse_args(self, ctx, args):
        # (typer vendors click: no isinstance against the click package, which may be absent)
        takes_value = {opt for p in self.get_params(ctx) if p.param_type_name == "option"
                       and not p.is_flag and not p.count for opt in p.opts}
        marked, previous = [], None
        for i, arg in enumerate(args):
            if arg == "--":
                marked.extend(args[i:])
                break
            if _NEGATIVE_NUMBER.match(arg) and previous not in takes_value:
                arg = _MARK + arg
            marked.append(arg)
            previous = arg
        rest = super().parse_args(ctx, marked)
        for key, value in ctx.params.items():
            if isinstance(value, str) and value.startswith(_MARK):
                ctx.params[key] = value[len(_MARK):]
        return [a[len(_MARK):] if a.startswith(_MARK) else a for a in rest]
