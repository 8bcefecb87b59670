"""The command registry and the group helpers, in-process: groups never collapse, every entry
loads, and long-running commands get the steady-state garbage collector."""

from __future__ import annotations

import gc

import pytest
import typer
from typer.testing import CliRunner

from cloudchat_cli import entry
from cloudchat_cli.app import app as root_app
from cloudchat_cli.commands import registry
from cloudchat_cli.commands.groups import command_group

runner = CliRunner()


def _one_subcommand(app: typer.Typer) -> typer.Typer:
    @app.command("only")
    def only(name: str = typer.Argument("x")) -> None:
        typer.echo(f"ran only {name}")

    return app


def test_a_plain_typer_with_one_subcommand_collapses():
    # The trap command_group exists for: the subcommand's name is no longer accepted.
    result = runner.invoke(_one_subcommand(typer.Typer()), ["only", "y"])
    assert result.exit_code == 2 and "unexpected extra argument" in result.output


def test_a_one_subcommand_group_keeps_its_subcommand_name():
    app = _one_subcommand(command_group(help="A group."))
    assert list(typer.main.get_command(app).commands) == ["only"]
    result = runner.invoke(app, ["only", "y"])
    assert result.exit_code == 0 and result.output == "ran only y\n"


def test_a_default_group_runs_its_default_bare_and_by_name():
    app = _one_subcommand(command_group(default="only", help="A group."))
    assert runner.invoke(app, ["z"]).output == "ran only z\n"
    assert runner.invoke(app, ["only", "z"]).output == "ran only z\n"


@pytest.mark.parametrize("name", list(registry.COMMANDS))
def test_every_registered_command_loads_under_its_name(name):
    command = registry.load(name)
    assert command.name == name
    steady = {n for n, c in getattr(command, "commands", {name: command}).items()
              if getattr(c.callback, "steady_gc", False)}
    assert steady == set(registry.COMMANDS[name].long_running)


def test_long_running_commands_are_the_ones_that_run_until_stopped():
    marked = {(n, sub) for n, c in registry.COMMANDS.items() for sub in c.long_running}
    assert marked == {("broadcast", "run"), ("webhook", "listen"), ("sandbox", "serve")}


def test_a_long_running_name_that_does_not_exist_is_refused():
    typo = {"sandbox": registry.Command("cloudchat_cli.commands.sandbox", ("srve",))}
    with pytest.raises(LookupError, match="no command 'srve'"):
        registry.load("sandbox", typo)


@pytest.fixture
def startup_gc():
    """The collector as ``entry.main`` leaves it for a short command; restored afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(entry.STARTUP_GC_THRESHOLD)
    frozen = gc.get_freeze_count()
    yield frozen
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_short_command_keeps_the_startup_gc(startup_gc, isolated):
    result = runner.invoke(root_app, ["completion", "bash"])
    assert result.exit_code == 0, result.output
    assert gc.get_threshold()[0] == entry.STARTUP_GC_THRESHOLD
    assert gc.get_freeze_count() == startup_gc


def test_a_long_running_command_gets_the_steady_gc_before_it_runs(startup_gc, isolated):
    # The sandbox stops at once (its --record file cannot be opened), after its body started.
    result = runner.invoke(root_app, ["sandbox", "--port", "0", "--record",
                                      str(isolated / "missing" / "log.jsonl")])
    assert "cannot open --record file" in str(result.exception), result.output
    assert gc.get_threshold()[0] != entry.STARTUP_GC_THRESHOLD
    assert gc.get_freeze_count() > startup_gc
