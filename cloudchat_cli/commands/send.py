"""``cloudchat send``: one message, text or media, any channel."""

from __future__ import annotations

import typer

from cloudchat_cli.commands.completion import complete_channel
from cloudchat_cli.commands.groups import NumericArgsCommand
from cloudchat_cli.commands.options import json_option, quiet_option
from cloudchat_cli.core import channels
from cloudchat_cli.output import console

EPILOG = """[bold]Examples[/bold]

  cloudchat send 6281234567890 "Halo dari CloudChat"
  cloudchat send +62-812-3456-7890 "Halo" --json | jq -r .id
  echo "Pesanan dikirim" | cloudchat send 6281234567890
  cloudchat send @alice "Hi" --channel tg
  cloudchat send -1001234567890 "Hi" -c tg    # a Telegram group's chat id
  cloudchat send 6281234567890 --media-url https://example.com/invoice.pdf
  cloudchat send 6281234567890 "Halo" -f reference=ORD-17 -q   # silent
"""


def send(
    ctx: typer.Context,
    to: str = typer.Argument(
        ...,
        help="Recipient: WhatsApp number (6281…, +62 812…, or 0812… with default_country_code), "
        "Telegram chat id or @username, Instagram/Messenger user id.",
        show_default=False,
    ),
    text: str | None = typer.Argument(
        None, help="Message text. '-' (or omitted, with piped stdin) reads it from stdin.",
        show_default=False,
    ),
    channel: str | None = typer.Option(
        None, "--channel", "-c", autocompletion=complete_channel,
        help=f"{channels.choices('|')}. Default: the profile's.",
        show_default=False,
    ),
    type_: str | None = typer.Option(
        None, "--type", "-t", help="text|image|video|audio|document (inferred from --media-url).",
        show_default=False,
    ),
    media_url: str | None = typer.Option(None, "--media-url", help="https:// URL of the media."),
    caption: str | None = typer.Option(None, "--caption", help="Caption for a media message."),
    filename: str | None = typer.Option(None, "--filename", help="File name shown for a document."),
    field: list[str] = typer.Option(
        [], "--field", "-f", help="Extra body field key=value (repeatable), passed through.",
        show_default=False,
    ),
    json_out: bool = json_option("Print the server's JSON body as is."),
    quiet: bool = quiet_option(),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="Fail with exit 5 instead of waiting for a rate-limit slot."
    ),
    ignore_optout: bool = typer.Option(
        False, "--ignore-optout", help="Send even to a recipient on the opt-out list."),
) -> None:
    """Send one message (text or media) to any channel."""
    from cloudchat_cli.output import sent
    from cloudchat_cli.output.notify import Notifier
    from cloudchat_cli.services import messages

    session = ctx.obj
    cfg = session.settings()
    if text == "-" or (text is None and media_url is None and not console.stdin_is_tty()):
        text = _read_stdin()
    spec = messages.MessageSpec(
        to=to,
        channel=channel or cfg.default_channel,
        text=text,
        type=type_,
        media_url=media_url,
        caption=caption,
        filename=filename,
        fields=messages.parse_fields(field),
    )
    payload = messages.build_payload(spec, cfg.default_country_code)
    if not ignore_optout:
        from cloudchat_cli.services.optout import check_send

        check_send(cfg.profile, payload, cfg.default_country_code)  # OptedOut: exit 2
    notifier = Notifier(quiet=quiet, limit=cfg.rate_limit, window=cfg.rate_window)
    client = session.client(notify=notifier)
    try:
        result = messages.send_message(client, payload, wait=not no_wait)
    finally:
        notifier.stop()
    if json_out:
        console.stdout().write(sent.json_body(result["raw"], result["response"]) + "\n")
    elif not quiet:
        sent.summary(result.get("response") or {}, payload)


def _read_stdin() -> str:
    from cloudchat_cli.services.messages import MAX_TEXT, InvalidMessage

    limit = MAX_TEXT * 4  # 4096 characters are at most this many bytes of UTF-8
    data = console.stdin().buffer.read(limit + 1)
    if len(data) > limit:
        raise InvalidMessage(f"text on stdin is too long (more than {limit} bytes; the API "
                             f"takes at most {MAX_TEXT} characters)", field="text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"stdin is not UTF-8 text (byte {exc.start})", field="text") from None
    return text.rstrip("\n")


app = typer.Typer()
app.command("send", cls=NumericArgsCommand, no_args_is_help=True, epilog=EPILOG)(send)
