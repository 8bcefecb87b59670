"""``cloudchat sandbox``: run the local CloudChat emulator in the foreground."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cloudchat_cli.commands.completion import complete_channel
from cloudchat_cli.commands.groups import command_group
from cloudchat_cli.commands.options import quiet_option
from cloudchat_cli.output import console

EPILOG = """[bold]Examples[/bold]

  cloudchat sandbox                     # any sk_test_… key, 60 requests/min
  cloudchat sandbox --port 0 --rate-limit 5 --rate-window 2 --record log.jsonl
  cloudchat sandbox --latency 1.5 --fail-rate 0.1 --seed 7   # slow and flaky
  cloudchat sandbox --webhook-url http://127.0.0.1:3000/hook   # signed events

Then, in another shell:

  export CLOUDCHAT_BASE_URL=http://127.0.0.1:8787/api/public/v1
  CLOUDCHAT_API_KEY=sk_test_x cloudchat send 6281234567890 "Halo"

Webhooks: with --webhook-url and a secret (--webhook-secret-file or \
CLOUDCHAT_WEBHOOK_SECRET), every accepted message emits message.status sent → delivered → \
read (numbers ending in 9999: sent → failed), and `cloudchat sandbox inbound --text "Halo"` \
(see `sandbox inbound --help`) emits a message.received.

Conventions: keys starting with sk_test_ro_ are read-only (403 on POST /messages); WhatsApp \
numbers ending in 0000 are "not on WhatsApp" (400 invalid_recipient).
"""

app = command_group(
    default="serve",
    help="Run a local CloudChat API emulator (no account needed); `sandbox inbound` makes it "
    "emit an incoming message.",
    epilog=EPILOG,
)


@app.command("serve", hidden=True, epilog=EPILOG)
def sandbox(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8787, "--port", help="Port (0 picks a free one).", min=0, max=65535),
    key: list[str] = typer.Option(
        [], "--key", help="Accept only this key (repeatable). Default: any sk_test_… key.",
        show_default=False,
    ),
    rate_limit: int = typer.Option(60, "--rate-limit", help="Requests per window per key.", min=1),
    rate_window: float = typer.Option(60.0, "--rate-window", help="Window, seconds.", min=0.001),
    latency: float = typer.Option(0.0, "--latency", help="Seconds to wait before answering.",
                                  min=0.0),
    fail_rate: float = typer.Option(0.0, "--fail-rate", help="Fraction of 500 answers (0..1).",
                                    min=0.0, max=1.0),
    drop_rate: float = typer.Option(
        0.0, "--drop-rate", help="Fraction of requests read, then hung up on (0..1).",
        min=0.0, max=1.0,
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the injected faults and ids."),
    record: str | None = typer.Option(
        None, "--record", help="Append one JSON line per request received to this file.",
        dir_okay=False,
    ),
    quiet: bool = quiet_option("Do not print accepted messages."),
    webhook_url: str | None = typer.Option(
        None, "--webhook-url", help="Send signed webhook events here.", show_default=False),
    webhook_secret_file: Path | None = typer.Option(
        None, "--webhook-secret-file", help="The webhook secret (else CLOUDCHAT_WEBHOOK_SECRET).",
        dir_okay=False, show_default=False),
    status_delay: float = typer.Option(
        0.2, "--status-delay", help="Seconds between an accepted message's status events.",
        min=0.0),
) -> None:
    """Run a local CloudChat API emulator (no account needed)."""
    from cloudchat_cli.core.errors import UsageError
    from cloudchat_cli.sandbox.server import SandboxConfig, SandboxServer
    from cloudchat_cli.sandbox.signals import StopSignals

    secret = _webhook_secret(ctx, webhook_secret_file) if webhook_url else None
    config = SandboxConfig(
        host=host, port=port, keys=list(key), rate_limit=rate_limit, rate_window=rate_window,
        latency=latency, fail_rate=fail_rate, drop_rate=drop_rate, seed=seed, record=record,
        quiet=quiet, webhook_url=webhook_url, webhook_secret=secret, status_delay=status_delay,
    )
    with StopSignals() as stop:  # before the URL is printed: a SIGTERM right after it counts
        try:
            server = SandboxServer(config, out=sys.stdout)
        except OSError as exc:
            if record and exc.filename == record:
                raise UsageError(f"cannot open --record file {record}: {exc.strerror}") from None
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="pick another --port (0 chooses a free one)",
            ) from None
        try:
            server.start_background()
            if host not in ("127.0.0.1", "localhost", "::1"):
                console.warn(f"listening on {host}: other machines can reach this sandbox")
            if webhook_url:
                console.info(f"webhooks → {webhook_url}")
            sys.stdout.write(f"CloudChat sandbox listening on {server.base_url}\n")
            sys.stdout.flush()
            console.info(
                f"rate limit {rate_limit} per {rate_window:g} s per key; "
                f"keys: {'the ones given' if key else 'any sk_test_…'}; Ctrl-C to stop"
            )
            stop.wait()
        finally:
            server.stop()
    console.info("Sandbox stopped.")


def _webhook_secret(ctx: typer.Context, secret_file: Path | None) -> str:
    """The first configured webhook secret: the sandbox signs like CloudChat does."""
    return ctx.obj.webhook_secrets(secret_file)[0]


@app.command("inbound", epilog="[bold]Example[/bold]\n\n  cloudchat sandbox inbound --from "
             "6281234567890 --text \"Halo, saya tertarik\"")
def inbound(
    text: str = typer.Option(..., "--text", help="The customer's message.", show_default=False),
    sender: str = typer.Option("6281234567890", "--from", help="Who writes in."),
    channel: str = typer.Option("whatsapp", "--channel", "-c", autocompletion=complete_channel,
                                help="Channel of the message."),
    push_name: str | None = typer.Option(None, "--name", help="The sender's display name.",
                                         show_default=False),
    url: str = typer.Option("http://127.0.0.1:8787", "--url", help="The running sandbox."),
) -> None:
    """Make a running sandbox emit a message.received webhook."""
    import httpx

    from cloudchat_cli.core.channels import parse_channel
    from cloudchat_cli.core.errors import CloudChatError, NetworkError

    target = url.rstrip("/").removesuffix("/api/public/v1") + "/_sandbox/inbound"
    try:
        response = httpx.post(target, json={"text": text, "from": sender, "pushName": push_name,
                                            "channel": parse_channel(channel)}, timeout=10)
    except httpx.HTTPError as exc:
        raise NetworkError(f"cannot reach the sandbox at {target}: {exc}") from None
    if response.status_code != 202:
        raise CloudChatError(f"the sandbox answered HTTP {response.status_code}: "
                             f"{response.text[:200]}")
    typer.echo(response.json().get("id", ""))
