"""A Typer group whose bare form runs a default command: ``broadcast FILE``, ``sandbox``."""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

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
        return command
