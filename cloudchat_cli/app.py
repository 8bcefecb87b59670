"""The root command, its global options, and ``main()``: the ONE place errors become exit codes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer

from cloudchat_cli.commands import completion as completion_cmd
from cloudchat_cli.commands.groups import LazyGroup
from cloudchat_cli.core.errors import CloudChatError, ExitCode, Interrupted
from cloudchat_cli.entry import version_text
from cloudchat_cli.output import console

HELP = """CloudChat from the command line: one API key for WhatsApp, Telegram, Messenger, Instagram.

[bold]Examples[/bold]

  cloudchat --sandbox send 6281234567890 "Halo"     # no account needed
  printf %s "$KEY" | cloudchat config set-key        # key into the OS keyring
  cloudchat send 6281234567890 "Pesanan dikirim"     # WhatsApp text
  cloudchat -p shop send @alice "Hi" -c tg           # other App, Telegram

Exit codes: 0 ok, 1 failure, 2 bad input, 3 auth, 4 not found, 5 rate limited, \
6 server error, 7 network/timeout, 8 partial broadcast, 130 interrupted.
"""

app = typer.Typer(
    name="cloudchat",
    cls=LazyGroup,  # each command's module is imported only when that command runs
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # pretty tracebacks with locals would print API keys
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    add_completion=False,  # `cloudchat completion SHELL` instead of --install-completion
)

_debug = {"on": os.environ.get("CLOUDCHAT_DEBUG", "") not in ("", "0")}


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
        autocompletion=completion_cmd.complete_profile,
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
    from cloudchat_cli.services.session import GlobalOptions, Session

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
    if os.environ.get("_CLOUDCHAT_COMPLETE"):
        # A completion request from the shell: register the shells only on this path.
        from typer._completion_classes import completion_init

        completion_init()
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="cloudchat", standalone_mode=True)
    except (CloudChatError, Interrupted) as exc:
        console.print_error(exc.message, exc.hint)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:  # before our handler was installed, or a library re-raised it
        console.print_error("interrupted (Ctrl-C)")
        sys.exit(int(ExitCode.INTERRUPTED))
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
