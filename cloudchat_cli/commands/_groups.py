"""Old name of ``commands/groups.py`` (the registry is ``commands/registry.py``), kept only
until ``send.py`` and ``broadcast.py`` import from ``groups``; delete it then."""

from cloudchat_cli.commands.groups import NumericArgsCommand, default_group  # noqa: F401
