"""The root command, its global options, ``run()`` (the ONE place errors become exit codes)
and ``main()``, the console script's way in."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cloudchat_cli.commands import completion as completion_cmd
from cloudchat_cli.commands.groups import LazyGroup
from cloudchat_cli.core import environment as _environment
from cloudchat_cli.core.errors import CloudChatError, ExitCode, Interrupted, process_status
from cloudchat_cli.output import console
from cloudchat_cli.version import version_text

if TYPE_CHECKING:
    from cloudchat_cli.core.environment import Environment
    from cloudchat_cli.sandbox.server import SandboxServer

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


class Invocation:
    """What one ``run()`` hands the root callback, and what the callback tells it back."""

    __slots__ = ("environment", "debug", "argv")

    def __init__(self, environment: Environment, debug: bool,
                 argv: tuple[str, ...] = ()) -> None:
        self.environment = environment
        self.debug = debug
        self.argv = argv  # the arguments after the program name, as run() was given them


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

    invocation = ctx.obj
    if not isinstance(invocation, Invocation):  # the Typer app driven without run()
        environment = _environment.current()
        invocation = Invocation(environment, bool(environment.debug), tuple(sys.argv[1:]))
    invocation.debug = invocation.debug or debug
    console.set_no_color(no_color)
    options = GlobalOptions(
        profile=profile,
        debug=invocation.debug,
        sandbox=sandbox,
        no_color=no_color,
        api_key_file=str(api_key_file) if api_key_file else None,
    )
    session = Session(options, environment=invocation.environment, warn=console.warn,
                      debug_log=console.debug, sandbox_provider=embedded_sandbox,
                      argv=invocation.argv)
    ctx.obj = session
    ctx.call_on_close(session.close)


def embedded_sandbox() -> SandboxServer:
    """``--sandbox``: an emulator in this process on a free loopback port, for this run only."""
    from cloudchat_cli.sandbox.server import SandboxConfig, SandboxServer

    server = SandboxServer(SandboxConfig(port=0, quiet=True))
    server.start_background()
    return server


def _raise_interrupted(signum: int, frame: object) -> None:
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    raise Interrupted(f"interrupted ({name})")


def main(argv: list[str] | None = None) -> None:
    """The console script: the process's environment, signal handlers, ``run()``, exit."""
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    if sys.stderr is not None and hasattr(sys.stderr, "reconfigure"):
        # stderr is for people: a character its encoding lacks is shown escaped, not fatal
        sys.stderr.reconfigure(errors="backslashreplace")
    environment = _environment.Environment.from_process()
    sys.exit(run(sys.argv[1:] if argv is None else argv, environment))


def run(argv: list[str], environment: Environment) -> int:
    """Run one invocation in ``environment`` and return its exit code: the ONE place errors
    become exit codes. Nothing outlives the call: the debug flag and colour belong to the
    invocation, and the consoles are those of ``environment``'s streams."""
    invocation = Invocation(environment, bool(environment.debug), tuple(argv))
    output = console.Output(environment)
    with _environment.bound(environment), console.bound(output), _std_streams(environment):
        try:
            return _invoke(argv, invocation)
        except (CloudChatError, Interrupted) as exc:
            output.print_error(exc.message, exc.hint)
            return int(exc.exit_code)
        except KeyboardInterrupt:  # before our handler was installed, or a library re-raised it
            output.print_error("interrupted (Ctrl-C)")
            return int(ExitCode.INTERRUPTED)
        except UnicodeEncodeError as exc:
            if not _is_output_encoding(exc, environment):
                return _internal_error(exc, invocation, output)
            output.print_error(  # ASCII only: stderr may be the stream that cannot encode
                f"the output cannot be written in this stream's encoding ({exc.encoding}): "
                f"it holds {ascii(exc.object[exc.start:exc.end])}",
                "use a UTF-8 locale (LANG=C.UTF-8) or set PYTHONIOENCODING=utf-8")
            return int(ExitCode.FAILURE)
        except BaseException as exc:  # the last line of defence: a message, not a traceback
            return _internal_error(exc, invocation, output)


def _internal_error(exc: BaseException, invocation: Invocation, output: console.Output) -> int:
    if invocation.debug:
        import traceback

        traceback.print_exc(file=invocation.environment.stderr)
    output.print_error(
        f"internal error: {type(exc).__name__}: {exc}",
        "this is a bug in cloudchat-cli; rerun with --debug for a traceback and report it",
    )
    return int(ExitCode.FAILURE)


def _is_output_encoding(exc: UnicodeEncodeError, environment: Environment) -> bool:
    """Did writing to stdout or stderr fail (a terminal or PYTHONIOENCODING that is not
    UTF-8), rather than some other encoding step?"""
    import codecs

    def name(encoding: object) -> str | None:
        try:
            return codecs.lookup(str(encoding)).name
        except LookupError:
            return None

    failed = name(exc.encoding)
    streams = (environment.stdout, environment.stderr)
    return failed is not None and any(name(getattr(s, "encoding", None)) == failed
                                      for s in streams)


def _invoke(argv: list[str], invocation: Invocation) -> int:
    if invocation.environment.env.get("_CLOUDCHAT_COMPLETE"):
        # A completion request from the shell: register the shells only on this path.
        from typer._completion_classes import completion_init

        completion_init()
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv), prog_name="cloudchat", standalone_mode=True,
                     obj=invocation)
    except SystemExit as exc:
        return process_status(exc.code, invocation.environment.stderr)
    return 0


@contextlib.contextmanager
def _std_streams(environment: Environment) -> Iterator[None]:
    """``sys.stdin/stdout/stderr`` are the environment's streams for the invocation, for what
    writes to them directly (Typer's help and usage errors); a no-op for the real process."""
    wanted = (environment.stdin, environment.stdout, environment.stderr)
    saved = (sys.stdin, sys.stdout, sys.stderr)
    if all(a is b for a, b in zip(wanted, saved, strict=True)):
        yield
        return
    sys.stdin, sys.stdout, sys.stderr = wanted
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
