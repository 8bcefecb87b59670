"""A Typer group whose bare form runs a default command: ``broadcast FILE``, ``sandbox``."""

from __future__ import annotations

from typer.core import TyperGroup


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
