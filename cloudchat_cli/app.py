"""The root command, its global options, and ``main()``: the ONE place errors become exit codes."""

from __future__ import annotations

import os
import platform
import signal
import sys
from pathlib import Path

import typer

from cloudchat_cli import __version__
from cloudchat_cli.commands import broadcast as broadcast_cmd
from cloudchat_cli.commands import config as config_cmd
from cloudchat_cli.commands import limits as limits_cmd
from cloudchat_cli.commands import sandbox as sandbox_cmd
from cloudchat_cli.commands import send as send_cmd
from cloudchat_cli.commands import webhook as webhook_cmd
from cloudchat_cli.core.errors import CloudChatError, ExitCode, Interrupted
from cloudchat_cli.output import console
from cloudchat_cli.services.session import GlobalOptions, Session

HELP = """CloudChat from the command line: one API key for WhatsApp, Telegram, Messenger, Instagram.

[bold]Examples[/bold]

  cloudchat --sandbox send 6281234567890 "Halo"     # no account needed
  printf %s "$KEY" | cloudchat config set-key        # key into the OS keyring
  cloudchat send 6281234567890 "Pesanan dikirim"     # WhatsApp text
  cloudchat -p shop send @alice "Hi" -c tg           # other App, Telegram

Exit codes: 0 ok, 1 failure, 2 bad input, 3 auth, 4 not found, 5 rate limited,
6 server error, 7 network/timeout, 8 partial broadcast, 130 interrupted.
"""

app = typer.Typer(
    name="cloudchat",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # pretty tracebacks with locals would print API keys
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    add_completion=False,
)
app.command("send", no_args_is_help=True, epilog=send_cmd.EPILOG)(send_cmd.send)
app.add_typer(broadcast_cmd.app, name="broadcast")
app.add_typer(config_cmd.app, name="config")
app.add_typer(webhook_cmd.app, name="webhook")
app.command("limits")(limits_cmd.limits)
app.add_typer(sandbox_cmd.app, name="sandbox")

_debug = {"on": os.environ.get("CLOUDCHAT_DEBUG", "") not in ("", "0")}


def version_text() -> str:
    return (
        f"cloudchat-cli {__version__} (Python {platform.python_version()}, "
        f"{platform.system()}-{platform.machine()})"
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    profile: str | None = typer.Option(
        None,
        "--profile",
        "-p",
        help="Profile (one per CloudChat App). Env: CLOUDCHAT_PROFILE.",
        show_default=False,
    ),
    api_key_file: Path | None = typer.Option(
        None,
        "--api-key-file",
        help="Read the API key from this file. Env: CLOUDCHAT_API_KEY_FILE.",
        dir_okay=False,
        show_default=False,
    ),
    sandbox: bool = typer.Option(
        False, "--sandbox", help="Run against a built-in sandbox with a test key (no account)."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Log HTTP traffic (secrets redacted) and show tracebacks."
    ),
    no_color: bool = typer.Option(False, "--no-color", help="No colours (NO_COLOR is honoured)."),
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show version and exit."
    ),
) -> None:
    """CloudChat from the command line."""
    _debug["on"] = _debug["on"] or debug
    console.set_no_color(no_color)
    options = GlobalOptions(
        profile=profile,
        debug=_debug["on"],
        sandbox=sandbox,
        no_color=no_color,
        api_key_file=str(api_key_file) if api_key_file else None,
    )
    session = Session(options, warn=console.warn, debug_log=console.debug)
    ctx.obj = session
    ctx.call_on_close(session.close)


def _raise_interrupted(signum: int, frame: object) -> None:
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    raise Interrupted(f"interrupted ({name})")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the documented code; render every known error in one place."""
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="cloudchat", standalone_mode=True)
    except CloudChatError as exc:
        console.print_error(exc.message, exc.hint)
        sys.exit(int(exc.exit_code))
    except SystemExit:
        raise
    except BaseException as exc:  # the last line of defence: a message, not a traceback
        if _debug["on"]:
            import traceback

            traceback.print_exc()
        console.print_error(
            f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in cloudchat-cli; rerun with --debug for a traceback and report it",
        )
        sys.exit(int(ExitCode.FAILURE))
