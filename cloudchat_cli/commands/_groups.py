"""A Typer group whose bare form runs a default command: ``broadcast FILE``, ``sandbox``."""

from __future__ import annotations

import importlib
import re

import typer
from typer.core import TyperCommand, TyperGroup

# Typer adds these to every app built with add_completion=True (the default); they would edit
# ~/.bashrc without asking. `cloudchat completion` is the one way to get completion.
TYPER_COMPLETION_PARAMS = ("install_completion", "show_completion")
_NEGATIVE_NUMBER = re.compile(r"^-[0-9]+$")
_MARK = "\x00"  # never in argv (C strings), so it cannot collide with a real argument

# Command name → module whose ``app`` (a Typer) implements it, in the order help lists them.
COMMANDS = {
    "send": "cloudchat_cli.commands.send",
    "broadcast": "cloudchat_cli.commands.broadcast",
    "webhook": "cloudchat_cli.commands.webhook",
    "optout": "cloudchat_cli.commands.optout",
    "config": "cloudchat_cli.commands.config",
    "api": "cloudchat_cli.commands.api",
    "limits": "cloudchat_cli.commands.limits",
    "sandbox": "cloudchat_cli.commands.sandbox",
    "completion": "cloudchat_cli.commands.completion",
}


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


class LazyGroup(TyperGroup):
    """The root group: a command's module is imported only when it is needed.

    ``cloudchat send`` then loads the send command alone, not broadcast, webhook, sandbox…;
    ``--help`` and completion of command names load them all (they need their help texts).
    """

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        module = COMMANDS.get(name)
        if module is None:
            return None
        command = typer.main.get_command(importlib.import_module(module).app)
        command.name = name
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
