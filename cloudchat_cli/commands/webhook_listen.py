"""``cloudchat webhook listen``: flags in ``webhook_listen_setup``, the work in
``services/webhooks/listener.py`` (its stop model: ``core/stop.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cloudchat_cli.commands import webhook_listen_setup as setup
from cloudchat_cli.commands.options import json_option
from cloudchat_cli.commands.webhook_common import (
    NO_SECRET_ARG,
    SECRET_FILE,
    load_secrets,
)
from cloudchat_cli.output import console


def listen_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8080, "--port", help="Port (0 picks a free one).", min=0,
                             max=65535),
    path: str | None = typer.Option(None, "--path", help="Only accept this path (default: any).",
                                    show_default=False),
    save: Path | None = typer.Option(None, "--save", help="Save each verified event here.",
                                     file_okay=False, show_default=False),
    forward_to: str | None = typer.Option(
        None, "--forward-to", help="Re-post each event (raw body, CloudChat headers) here.",
        show_default=False),
    exec_cmd: str | None = typer.Option(
        None, "--exec", help="Run this command per event with the body on stdin.",
        show_default=False),
    max_body: int = typer.Option(1024 * 1024, "--max-body", help="Largest body accepted (bytes).",
                                 min=1),
    no_verify: bool = typer.Option(False, "--no-verify", help="Accept unsigned events (unsafe)."),
    read_timeout: float = typer.Option(
        10.0, "--read-timeout", help="Drop a client that stalls this long mid-request (s).",
        min=0.1),
    forward_retry_delays: str = typer.Option(
        "2,4,8", "--forward-retry-delays", help="First waits between forward attempts (s), "
        "like CloudChat's own policy; then doubling up to --forward-max-delay."),
    forward_max_delay: str = typer.Option(
        "1h", "--forward-max-delay", help="Longest wait between forward attempts (90, 15m, 1h)."),
    forward_give_up_after: str = typer.Option(
        "3d", "--forward-give-up-after", help="Give up forwarding an event this long after it "
        "was received (it stays saved; `webhook replay` can send it)."),
    status_every: str = typer.Option(
        "1m", "--status-every", help="While events wait for the app, say how many this often."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="A stderr line per forward attempt."),
    print_unit: bool = typer.Option(
        False, "--print-systemd-unit", help="Print a systemd unit that runs this listener with "
        "these options (the secret from a credential file, never in the unit), and exit."),
    secret_file: list[Path] = SECRET_FILE,
    secret: str | None = NO_SECRET_ARG,
    json_out: bool = json_option("One JSON object per event on stdout."),
    dedupe_store: str | None = typer.Option(
        None, "--dedupe-store", help="Share deduplication with the other replicas through this "
        "Redis URL (setting webhook_dedupe_store; give a password through "
        "CLOUDCHAT_WEBHOOK_DEDUPE_STORE, not here).", show_default=False),
    dedupe_ttl: str = typer.Option(
        "7d", "--dedupe-ttl", help="How long a saved event's id is remembered in the shared "
        "store (s, or with m/h/d)."),
    dedupe_claim_ttl: str = typer.Option(
        "10s", "--dedupe-claim-ttl", help="How long a replica's claim on an event it is saving "
        "lasts if it dies (keep it under 14 s: CloudChat's last retry)."),
    optout_keywords: str | None = typer.Option(
        None, "--optout-keywords", help="Put the sender of a message that is exactly one of "
        "these words (any case), e.g. STOP,BERHENTI, on the profile's opt-out list.",
        show_default=False),
) -> None:
    """Receive CloudChat events: verify, deduplicate, show, save and forward them."""
    from cloudchat_cli.core.durations import parse_duration
    from cloudchat_cli.core.errors import UsageError
    from cloudchat_cli.output.webhooks import DeliveryPrinter
    from cloudchat_cli.services.webhooks.delivery import check_url
    from cloudchat_cli.services.webhooks.listener import ListenConfig, Listener
    from cloudchat_cli.services.webhooks.queue import ForwardPolicy

    if forward_to is not None:
        check_url(forward_to)
    policy = ForwardPolicy(
        delays=setup.delays(forward_retry_delays),
        max_delay=parse_duration(forward_max_delay, "--forward-max-delay"),
        give_up_after=parse_duration(forward_give_up_after, "--forward-give-up-after"))
    status_interval = parse_duration(status_every, "--status-every")
    if print_unit:
        setup.print_unit(ctx.obj.env, no_verify)
        return
    if path is not None and not path.startswith("/"):
        path = "/" + path
    store = setup.dedupe_store(ctx, dedupe_store)
    secrets: list[str] = []
    if no_verify:
        from cloudchat_cli.commands._secrets import refuse_argv_secret
        from cloudchat_cli.core import credentials

        refuse_argv_secret(credentials.WEBHOOK_SECRET, secret)
        console.warn("--no-verify: events are accepted without checking their signature")
    else:
        secrets = load_secrets(ctx, secret_file, secret)
    config = ListenConfig(host=host, port=port, path=path, secrets=secrets,
                          verify=not no_verify, max_body=max_body, save_dir=save,
                          forward_to=forward_to, exec_cmd=exec_cmd, read_timeout=read_timeout,
                          forward_policy=policy, verbose=verbose,
                          status_interval=max(status_interval, 0.1),
                          on_event=setup.optout_hook(ctx, optout_keywords), dedupe_store=store,
                          dedupe_ttl=setup.duration("--dedupe-ttl", dedupe_ttl),
                          dedupe_claim_ttl=setup.duration("--dedupe-claim-ttl",
                                                          dedupe_claim_ttl))
    printer = DeliveryPrinter(json_out=json_out)
    try:
        listener = Listener(config, on_delivery=printer.delivery, on_notice=console.info)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="pick another --port (0 chooses a free one)") from None
    _serve(listener, printer, host, forward_to)


def _ready(listener, host: str, forward_to: str | None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.warn(f"listening on {host}: other machines can send events to this listener")
    console.info(f"Listening on {listener.url()} — Ctrl-C to stop")
    if listener.queue is not None:
        console.info(f"Forwarding to {forward_to}; events wait for it in {listener.store.dir}")
    if listener.dedupe is not None:
        console.info(f"Deduplicating with every replica using {listener.dedupe.shown}")


def _serve(listener, printer, host: str, forward_to: str | None) -> None:
    """Serve until Ctrl-C/SIGTERM (exit 0); a second one stops at once (exit 130)."""
    from cloudchat_cli.core.errors import Interrupted

    try:  # the first signal: deliveries, --exec and due forwards are finished
        listener.run(on_ready=lambda: _ready(listener, host, forward_to))
    except Interrupted:  # a signal before run() took over the handlers (nothing served)
        listener.shutdown()
    waiting = ""
    if listener.queue is not None:
        left = listener.queue.waiting
        waiting = (f"; {left} waiting to be forwarded (kept in {listener.store.dir}: the next "
                   "run resumes them)" if left else "; nothing waiting to be forwarded")
    console.info(f"Stopped after {printer.accepted} event(s), {printer.duplicates} duplicate(s), "
                 f"{printer.rejected} rejected at {time.strftime('%H:%M:%S')}{waiting}.")
    if listener.stopped_now:
        skipped = (f"; --exec was not run for {listener.exec_skipped} event(s)"
                   if listener.exec_skipped else "")
        raise Interrupted(f"interrupted again ({listener.stop.signal or 'Ctrl-C'}): stopped "
                          f"at once{skipped}")
