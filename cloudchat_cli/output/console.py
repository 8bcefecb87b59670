"""The two consoles: stdout for data, stderr for people (progress, warnings, errors).

An ``Output`` holds them for one invocation, built lazily from its ``Environment`` (streams,
colour, terminal, ``COLUMNS``). ``app.run()`` binds the invocation's ``Output`` for as long as
the command runs (``bound``); the module functions below (``info``, ``warn``, ``out``,
``print_json``…) write to that one, from any thread the command starts. Outside ``run()``
(a library caller, a unit test) they write to a fresh ``Output`` of the current environment.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any, TextIO

from cloudchat_cli.core import environment as _environment

if TYPE_CHECKING:
    from rich.console import Console

    from cloudchat_cli.core.environment import Environment


class Output:
    """The stdout and stderr consoles of one invocation."""

    def __init__(self, environment: Environment, *, no_color: bool = False) -> None:
        self.environment = environment
        self._no_color = no_color
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def no_color(self) -> bool:
        return self._no_color or bool(self.environment.no_color)

    def set_no_color(self, value: bool) -> None:
        """``--no-color``: the consoles are rebuilt on next use."""
        self._no_color = value
        self._out = self._err = None

    def _make(self, stream: TextIO, isatty: bool) -> Console:
        from rich.console import Console

        env = self.environment
        force = isatty if isatty != _environment._isatty(stream) else None
        return Console(
            file=stream,
            no_color=self.no_color,
            force_terminal=force,
            width=env.columns,
            highlight=False,
            soft_wrap=True,
            emoji=False,
            _environ=env.env,  # TERM, FORCE_COLOR…: the invocation's, not the process's
        )

    def out(self) -> Console:
        if self._out is None:
            self._out = self._make(self.environment.stdout, bool(self.environment.stdout_isatty))
        return self._out

    def err(self) -> Console:
        if self._err is None:
            self._err = self._make(self.environment.stderr, bool(self.environment.stderr_isatty))
        return self._err

    def print_json(self, data: Any) -> None:
        """Write JSON to stdout: pretty on a TTY, one compact line when piped."""
        if self.environment.stdout_isatty:
            text = json.dumps(data, indent=2, ensure_ascii=False)
        else:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        stream = self.environment.stdout
        stream.write(text + "\n")
        stream.flush()

    def print_error(self, message: str, hint: str | None = None) -> None:
        console = self.err()
        console.print(f"[bold red]Error:[/bold red] {escape(message)}")
        if hint:
            console.print(f"[dim]Hint:[/dim] {escape(hint)}")


_bound: _environment.Scoped[Output] = _environment.Scoped()


def bound(output: Output) -> contextlib.AbstractContextManager[Output]:
    """Send the module functions to ``output`` until the block ends (``app.run`` only)."""
    return _bound.bound(output)


def current() -> Output:
    """The invocation's ``Output``; outside ``run()``, a fresh one of the current environment."""
    return _bound.top() or Output(_environment.current())


def set_no_color(value: bool) -> None:
    current().set_no_color(value)


def out() -> Console:
    return current().out()


def err() -> Console:
    return current().err()


def stdin() -> TextIO:
    return current().environment.stdin


def stdout() -> TextIO:
    return current().environment.stdout


def stdin_is_tty() -> bool:
    return bool(current().environment.stdin_isatty)


def stdout_is_tty() -> bool:
    return bool(current().environment.stdout_isatty)


def stderr_is_tty() -> bool:
    return bool(current().environment.stderr_isatty)


def escape(text: Any) -> str:
    from rich.markup import escape as _escape

    return _escape(str(text))


def warn(message: str) -> None:
    err().print(f"[yellow]Warning:[/yellow] {escape(message)}")


def info(message: str) -> None:
    err().print(escape(message))


def debug(message: str) -> None:
    err().print(f"[dim]debug: {escape(message)}[/dim]")


def print_json(data: Any) -> None:
    """Write JSON to stdout: pretty on a TTY, one compact line when piped."""
    current().print_json(data)


def print_error(message: str, hint: str | None = None) -> None:
    current().print_error(message, hint)


def confirm(question: str) -> bool:
    """Ask yes/no on the terminal (default no). End of input (Ctrl-D) is a no, like an empty
    answer, not click's "Aborted!"; Ctrl-C still interrupts (exit 130)."""
    import typer

    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        err().print()  # the prompt's line ends
        return False
