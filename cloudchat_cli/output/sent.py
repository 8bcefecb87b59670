"""How ``cloudchat send`` shows a sent message: one line for people, or the server's JSON."""

from __future__ import annotations

from cloudchat_cli.output import console


def summary(response: dict, payload: dict) -> None:
    out = console.out()
    esc = console.escape
    ident = field(response.get("id"))
    status = field(response.get("status"))
    head = "[green]✓[/green] Sent" if console.stdout_is_tty() else "Sent"
    parts = [head]
    if ident:
        parts.append(f"[bold]{esc(ident)}[/bold]")
    if status:
        parts.append(f"({esc(status)})")
    parts.append(f"via {esc(field(response.get('channel')) or payload['channel'])}")
    parts.append(f"to {esc(field(response.get('to')) or payload['to'])}")
    out.print(" ".join(parts))


def field(value: object) -> str:
    """A field echoed from the server, safe for a terminal: one line, no control characters
    (an ESC sequence would reach the terminal), JSON for anything not a string or number."""
    import json

    from cloudchat_cli.core.errorbody import one_line

    if value is None or isinstance(value, bool | dict | list):
        text = json.dumps(value, ensure_ascii=False) if value else ""
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        text = ""
    return one_line(text, 100)


def json_body(raw: bytes, data: dict) -> str:
    """The server's JSON as it came, unless it holds characters a terminal would act on."""
    text = raw.decode("utf-8", "replace").strip()
    if all(ch.isprintable() or ch in " \t\r\n" for ch in text):
        return text
    import json

    return json.dumps(data, ensure_ascii=True)
