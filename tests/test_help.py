"""Every command's --help: usage lines name commands as users type them."""

from __future__ import annotations

import pytest
import typer

from cloudchat_cli.app import app

from .conftest import run_cli


def command_paths() -> list[tuple[str, ...]]:
    """Every command a user can type, as a path of names; hidden ones are left out (a hidden
    default command is reached through its group's name)."""
    root = typer.main.get_command(app)
    ctx = None  # no command here looks at the context to list its subcommands
    found: list[tuple[str, ...]] = []

    def walk(group, path: tuple[str, ...]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            found.append((*path, name))
            if hasattr(command, "list_commands"):  # a group (typer vendors its own click)
                walk(command, (*path, name))

    walk(root, ())
    return found


def hidden_names() -> set[str]:
    root = typer.main.get_command(app)
    names = set()
    for name in root.list_commands(None):
        command = root.get_command(None, name)
        if hasattr(command, "list_commands"):
            names |= {n for n in command.list_commands(None)
                      if command.get_command(None, n).hidden}
    return names


def test_the_walk_sees_every_group():
    paths = command_paths()
    assert ("broadcast",) in paths and ("broadcast", "status") in paths
    assert ("sandbox", "inbound") in paths and ("config", "doctor") in paths
    assert {"run", "serve"} <= hidden_names()


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_usage_line_names_the_command_as_typed(env, path):
    proc = run_cli(*path, "--help", env=env)
    assert proc.returncode == 0, proc.stderr
    usage = [line.strip() for line in proc.stdout.splitlines() if "Usage:" in line]
    assert len(usage) == 1, proc.stdout
    words = usage[0].split()
    assert words[:len(path) + 2] == ["Usage:", "cloudchat", *path]
    rest = words[len(path) + 2:]
    assert not set(rest) & hidden_names(), usage[0]


@pytest.mark.parametrize("group", ["broadcast", "sandbox"])
def test_a_usage_error_points_to_the_group(env, group):
    proc = run_cli(group, "--no-such-flag", env=env)
    assert proc.returncode == 2
    assert f"Usage: cloudchat {group} [OPTIONS]" in proc.stderr
    assert f"Try 'cloudchat {group} -h' for help." in proc.stderr
