"""``cloudchat api METHOD PATH``: any API endpoint through the same core, like ``gh api``."""

from __future__ import annotations

import typer

from cloudchat_cli.output import console

EPILOG = """[bold]Examples[/bold]

  cloudchat api POST messages -f channel=telegram -f to=@alice -f text=Hi
  cloudchat api POST messages --input message.json
  cloudchat api POST messages --input - < message.json | jq -r .status
  cloudchat api -i POST messages --input message.json   # with headers

-f key=value sends a string; -F key=value sends a typed JSON value (number, true/false, \
null, or JSON), and -F key=@file reads the value from a file; on GET and DELETE, fields \
become query parameters. A 2xx body is printed whole; on a 4xx/5xx the error body goes to \
stdout as JSON and the message to stderr. Exit codes as for every command.
"""


def api(
    ctx: typer.Context,
    args: list[str] = typer.Argument(..., metavar="[METHOD] PATH", help="GET, POST, PUT, PATCH "
                                     "or DELETE (or -X), then a path relative to base_url, e.g. "
                                     "messages.", show_default=False),
    method: str | None = typer.Option(None, "--method", "-X", help="The HTTP method (default: "
                                      "GET, or POST with fields or --input).",
                                      show_default=False),
    field: list[str] = typer.Option([], "--field", "-f", help="String field key=value "
                                    "(repeatable).", show_default=False),
    typed_field: list[str] = typer.Option([], "--typed-field", "-F", help="Typed field "
                                          "key=value (JSON value or @file).", show_default=False),
    input_file: str | None = typer.Option(None, "--input", help="Request body from a file, or - "
                                          "for stdin.", show_default=False),
    header: list[str] = typer.Option([], "--header", "-H", help="Extra request header "
                                     "key:value (repeatable; never Authorization).",
                                     show_default=False),
    include: bool = typer.Option(False, "--include", "-i", help="Print the status line and "
                                 "response headers (X-RateLimit-*) before the body."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Exit 5 instead of waiting for a "
                                 "rate-limit slot."),
) -> None:
    """Send an authenticated request to any API path and print the response body."""
    from cloudchat_cli.core.errors import ApiError
    from cloudchat_cli.output.notify import Notifier
    from cloudchat_cli.services import rawapi

    verb, path = rawapi.method_and_path(
        args, method, bool(field or typed_field or input_file is not None))
    request = rawapi.build_request(verb, path, field, typed_field, input_file, header)
    session = ctx.obj
    cfg = session.settings()
    client = session.client(notify=Notifier(limit=cfg.rate_limit, window=cfg.rate_window))
    try:
        response = rawapi.send(client, request, wait=not no_wait)
    except ApiError as exc:
        failed = getattr(exc, "response", None)
        if failed is not None:  # like `gh api`: the error body on stdout, the message on stderr
            if include:
                _head(failed)
            _write(rawapi.error_body_json(failed.status, failed.body), pretty=True)
        raise
    if response.truncated:
        from cloudchat_cli.core.errors import CloudChatError
        from cloudchat_cli.core.http import MAX_BODY

        raise CloudChatError(
            f"HTTP {response.status}: the response body is larger than "
            f"{MAX_BODY // 1024 // 1024} MiB; nothing was printed (a cut body is not the "
            "response)", hint="ask for less (e.g. -f limit=…)")
    if include:
        _head(response)
    _write(response.body, pretty=response.json() is not None)


def _head(response) -> None:
    from cloudchat_cli.services.rawapi import status_line

    lines = [status_line(response.status)]
    lines += [f"{key}: {value}" for key, value in response.headers.items()]
    out = console.stdout()
    out.write("\n".join(lines) + "\n\n")
    out.flush()


def _write(body: bytes, *, pretty: bool) -> None:
    """The body whole: pretty JSON on a terminal, the exact bytes when piped."""
    if pretty and console.stdout_is_tty():
        import json

        console.print_json(json.loads(body))
        return
    if body:
        out = console.stdout()
        out.flush()  # text written before (the -i head) goes first
        out.buffer.write(body if body.endswith(b"\n") else body + b"\n")
        out.buffer.flush()


app = typer.Typer()
app.command("api", epilog=EPILOG)(api)
