"""The two consoles: stdout for data, stderr for people (progress, warnings, errors)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_state: dict[str, Any] = {"no_color": False, "out": None, "err": None}


def set_no_color(value: bool) -> None:
    _state["no_color"] = value or bool(os.environ.get("NO_COLOR"))
    _state["out"] = _state["err"] = None


def _make(stream: Any) -> Console:
    from rich.console import Console

    no_color = _state["no_color"] or bool(os.environ.get("NO_COLOR"))
    return Console(
        file=stream,
        no_color=no_color,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def out() -> Console:
    if _state["out"] is None or _state["out"].file is not sys.stdout:
        _state["out"] = _make(sys.stdout)
    return _state["out"]


def err() -> Console:
    if _state["err"] is None or _state["err"].file is not sys.stderr:
        _state["err"] = _make(sys.stderr)
    return _state["err"]


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


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
    if stdout_is_tty():
        text = json.dumps(data, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_error(message: str, hint: str | None = None) -> None:
    console = err()
    console.print(f"[bold red]Error:[/bold red] {escape(message)}")
    if hint:
        console.print(f"[dim]Hint:[/dim] {escape(hint)}")
