"""``cloudchat webhook``: verify captured bodies, sign, trigger test events, listen live."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from cloudchat_cli.commands.completion import complete_channel
from cloudchat_cli.entry import steady_gc
from cloudchat_cli.output import console

app = typer.Typer(
    help="Verify X-CloudChat-Signature, sign and trigger test events, receive events live.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

SECRET_FILE = typer.Option(
    [], "--secret-file", help="Read the webhook secret from this file: one secret per line "
    "(two lines during a rotation); repeatable. Default: the environment, else the keyring.",
    dir_okay=False, show_default=False)
SECRET_NOTE = """The secret: --secret-file, else CLOUDCHAT_WEBHOOK_SECRET (exactly one secret; two \
separated by a newline during a rotation) or CLOUDCHAT_WEBHOOK_SECRET_FILE, else the profile's \
(`cloudchat config set-webhook-secret`). Spaces and commas are part of a secret.
"""
NO_SECRET_ARG = typer.Option(None, "--secret", hidden=True, show_default=False)

VERIFY_EPILOG = """[bold]Examples[/bold]

  cloudchat webhook verify body.json --signature "$SIGNATURE"
  cat body.json | cloudchat webhook verify - --signature "sha256=$SIGNATURE"
  cloudchat webhook verify --request captured.http   # raw request (nc)
  cloudchat webhook verify --dir ./events   # what `listen --save` kept

With --dir, --max-age compares each event's timestamp with the time it was received (saved \
with it); for a body, a request or a live check, with now.

Exit 0 valid, 1 invalid (or stale or from the future with --max-age), 2 unreadable input, \
a malformed signature, or no secret.

""" + SECRET_NOTE

LISTEN_EPILOG = """[bold]Examples[/bold]

  cloudchat webhook listen --port 8080 --path /webhook
  cloudchat webhook listen --save ./events --json | jq .event
  cloudchat webhook listen --forward-to http://127.0.0.1:3000/hook --save ev

Answers 200 once an event is verified (and saved); 401 bad or missing signature, 400 not \
JSON or malformed HTTP, 413 over --max-body, 405 not POST, 500 when it could not be saved. \
HTTP/1.1 with Content-Length or chunked bodies, Expect: 100-continue, keep-alive and \
pipelining. A retried event (same id) gets 200 and is shown as a duplicate. GET /healthz \
answers 200 with the forward queue's counts. Replicas behind one load balancer \
share deduplication through Redis with --dedupe-store (or \
CLOUDCHAT_WEBHOOK_DEDUPE_STORE): an event another replica is still saving gets 503, and so \
does every event while the store is unreachable (exit 7 if it is unreachable at start).

Forwarding runs after the answer, from a queue on disk (forward.sqlite in --save DIR, else in \
the state dir's outbox): while the app is down events keep being accepted and wait, in \
arrival order, retried at 2, 4, 8 s then doubling up to --forward-max-delay (1h), given up \
after --forward-give-up-after (3d); a restarted listener resumes them. SIGUSR1 retries them \
at once (the app is back).

""" + SECRET_NOTE


def _secrets(ctx: typer.Context, secret_file: list[Path], argv_value: str | None
             ) -> list[str]:
    """The configured webhook secret(s), refusing one typed on the command line."""
    from cloudchat_cli.core import credentials

    credentials.refuse_argv_secret(credentials.WEBHOOK_SECRET, argv_value)
    return ctx.obj.webhook_secrets(secret_file)


def _read_body(body_file: str | None) -> bytes:
    from cloudchat_cli.core.errors import UsageError

    if body_file in (None, "-"):
        if body_file is None and sys.stdin.isatty():
            raise UsageError("give a BODY_FILE, '-' for stdin, --request FILE or --dir DIR")
        return sys.stdin.buffer.read()
    try:
        return Path(body_file).read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{body_file} is a directory (did you mean --dir?)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {body_file}: {exc.strerror}") from None


@app.command("verify", epilog=VERIFY_EPILOG)
def verify_cmd(
    ctx: typer.Context,
    body_file: str | None = typer.Argument(
        None, help="File with the exact body bytes, or - for stdin.", show_default=False),
    signature: str | None = typer.Option(
        None, "--signature", "-s", help="The X-CloudChat-Signature value (hex, sha256=…, or "
        "base64).", show_default=False),
    request: Path | None = typer.Option(
        None, "--request", help="A raw captured HTTP request (headers, blank line, body).",
        show_default=False),
    directory: Path | None = typer.Option(
        None, "--dir", help="Verify every event saved by `webhook listen --save DIR`.",
        show_default=False),
    max_age: float | None = typer.Option(
        None, "--max-age", help="Also require the body's timestamp to be at most this old (s) "
        "and at most 5 minutes in the future: at the time it was received for --dir, else now.",
        show_default=False, min=0),
    secret_file: list[Path] = SECRET_FILE,
    secret: str | None = NO_SECRET_ARG,
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check captured webhook bodies against X-CloudChat-Signature."""
    from cloudchat_cli.core.errors import ExitCode, UsageError
    from cloudchat_cli.services.webhooks import verifying

    modes = sum(x is not None for x in (request, directory)) + (
        1 if body_file is not None or signature is not None else 0)
    if modes != 1:
        raise UsageError("give exactly one of: BODY_FILE --signature SIG, --request FILE, "
                         "--dir DIR")
    secrets = _secrets(ctx, secret_file, secret)
    if directory is not None:
        results = verifying.verify_dir(directory, secrets, max_age=max_age)
        _show_dir(results, json_out)
        if not all(r.valid for r in results):
            raise typer.Exit(int(ExitCode.FAILURE))
        return
    if request is not None:
        result = verifying.verify_request_file(request, secrets, max_age=max_age)
    else:
        if signature is None:
            raise UsageError("--signature is required with a BODY_FILE")
        result = verifying.verify_body(_read_body(body_file), signature, secrets,
                                       max_age=max_age)
    _show_result(result, json_out)
    if not result.valid:
        raise typer.Exit(int(ExitCode.FAILURE))


def _show_result(result, json_out: bool) -> None:
    from cloudchat_cli.output.webhooks import verify_json, verify_line

    if json_out:
        console.print_json(verify_json(result))
        return
    if result.valid:
        which = (f" (secret {result.matched + 1} of {result.secrets})"
                 if result.secrets > 1 else "")
        console.out().print(f"[green]✓ valid signature[/green]{which}")
        console.out().print(console.escape(verify_line(result)))
    else:
        console.err().print(f"[red]✗ {console.escape(result.reason)}[/red]")
        if result.event is not None or result.body_preview:
            console.info(verify_line(result) or result.body_preview)


def _show_dir(results, json_out: bool) -> None:
    if json_out:
        from cloudchat_cli.output.webhooks import verify_json

        console.print_json([verify_json(r) for r in results])
        return
    from rich.table import Table

    from cloudchat_cli.core.errorbody import one_line

    table = Table(box=None, pad_edge=False)
    for column in ("file", "event", "id", "result"):
        table.add_column(column)
    for r in results:
        mark = "[green]valid[/green]" if r.valid else f"[red]{console.escape(r.reason)}[/red]"
        table.add_row(console.escape(r.source), console.escape(one_line(r.event_name or "?", 40)),
                      console.escape(one_line(r.event_id or "?", 80)), mark)
    console.out().print(table)
    bad = sum(1 for r in results if not r.valid)
    console.info(f"{len(results)} event(s): {len(results) - bad} valid, {bad} invalid")


@app.command("sign")
def sign_cmd(
    ctx: typer.Context,
    body_file: str | None = typer.Argument(None, help="Body file, or - for stdin.",
                                           show_default=False),
    secret_file: list[Path] = SECRET_FILE,
    secret: str | None = NO_SECRET_ARG,
) -> None:
    """Print the X-CloudChat-Signature for a body (to test a receiver by hand)."""
    from cloudchat_cli.services.webhooks.signature import sign

    secrets = _secrets(ctx, secret_file, secret)
    typer.echo(sign(secrets[0], _read_body(body_file)))


@app.command("trigger", epilog="[bold]Example[/bold]\n\n  cloudchat webhook trigger "
             "http://127.0.0.1:3000/hook --set data.text=Halo")
def trigger_cmd(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="Your webhook endpoint.", show_default=False),
    event: str = typer.Option("message.received", "--event", "-e",
                              help="message.received or message.status."),
    channel: str = typer.Option("whatsapp", "--channel", "-c", autocompletion=complete_channel,
                                help="Channel of the event."),
    sets: list[str] = typer.Option([], "--set", help="Override a field: data.text=Halo "
                                   "(repeatable; JSON values allowed).", show_default=False),
    no_retry: bool = typer.Option(False, "--no-retry", help="Send once; no 2/4/8 s retries."),
    secret_file: list[Path] = SECRET_FILE,
    secret: str | None = NO_SECRET_ARG,
    json_out: bool = typer.Option(False, "--json", help="Print the attempts as JSON."),
) -> None:
    """Build, sign and POST a realistic event the way CloudChat does (5 s timeout, retries)."""
    import json

    from cloudchat_cli.core.errors import CloudChatError, ExitCode
    from cloudchat_cli.services.messages import parse_channel
    from cloudchat_cli.services.webhooks import events
    from cloudchat_cli.services.webhooks.delivery import check_url, deliver, webhook_headers

    check_url(url)
    secrets = _secrets(ctx, secret_file, secret)
    body_obj = events.build_event(event, channel=parse_channel(channel), sets=sets)
    body = json.dumps(body_obj, ensure_ascii=False).encode()

    def shown(attempt, delay) -> None:
        if json_out:
            return
        what = (f"HTTP {attempt.status}" if attempt.status is not None
                else f"no answer ({attempt.error})")
        tail = f"; retrying in {delay:g} s" if delay else ""
        console.info(f"attempt {attempt.number}: {what} in {attempt.elapsed * 1000:.0f} ms{tail}")

    attempts = deliver(url, body, webhook_headers(secrets[0], body, event), retry=not no_retry,
                       on_attempt=shown)
    last = attempts[-1]
    if json_out:
        console.print_json({"event": body_obj, "attempts": [
            {"attempt": a.number, "status": a.status, "ms": round(a.elapsed * 1000, 1),
             "error": a.error} for a in attempts]})
    if last.ok:
        if not json_out:
            console.out().print(f"Delivered {body_obj['id']} ({event}) to {url}")
        return
    code = (ExitCode.NETWORK if last.status is None
            else ExitCode.SERVER if last.status >= 500 else ExitCode.FAILURE)
    raise CloudChatError(
        f"{url} did not accept the event after {len(attempts)} attempt(s): "
        + (f"HTTP {last.status} {last.body}" if last.status is not None else str(last.error)),
        exit_code=code)


def _delays(text: str) -> tuple[float, ...]:
    from cloudchat_cli.core.errors import UsageError

    try:
        delays = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        delays = (-1.0,)
    if any(d < 0 or d > 3600 for d in delays):
        raise UsageError(f"--forward-retry-delays {text!r}: give seconds like 2,4,8 (or '' for "
                         "no retry)")
    return delays


def _duration(flag: str, text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    from cloudchat_cli.core.errors import UsageError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:])
    try:
        seconds = float(value[:-1] if scale else value) * (scale or 1)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 366 * 86400:  # also refuses nan and inf
        raise UsageError(f"{flag} {text!r}: give a duration from 1 s to 366 days, like 30s, "
                         "15m, 12h or 7d")
    return seconds


def _dedupe_store(ctx: typer.Context, flag: str | None) -> str | None:
    """The shared dedupe store's URL (flag > env > profile), or None for this listener's
    own memory; a password typed on the command line is refused (``ps`` shows it)."""
    from cloudchat_cli.core import redisurl
    from cloudchat_cli.core.errors import UsageError

    if flag is not None:
        try:
            parsed = redisurl.parse_store(flag)
        except ValueError as exc:
            raise UsageError(f"--dedupe-store {exc}") from None
        if redisurl.has_password(parsed):
            raise UsageError("--dedupe-store: a password on the command line is visible to "
                             "other users", hint="set CLOUDCHAT_WEBHOOK_DEDUPE_STORE in the "
                             "environment (from a secret) instead")
        ctx.obj.flags["webhook_dedupe_store"] = parsed
    url = ctx.obj.settings().webhook_dedupe_store
    return None if url == redisurl.LOCAL else url


def _optout_hook(ctx: typer.Context, keywords: str | None):
    if keywords is None:
        return None
    from cloudchat_cli.services import optout

    cfg = ctx.obj.settings()
    return optout.keyword_handler(cfg.profile, optout.parse_keywords(keywords), console.info,
                                  default_country_code=cfg.default_country_code)


@app.command("listen", epilog=LISTEN_EPILOG)
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
    json_out: bool = typer.Option(False, "--json", help="One JSON object per event on stdout."),
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
    from cloudchat_cli.core.errors import Interrupted, UsageError
    from cloudchat_cli.output.webhooks import DeliveryPrinter
    from cloudchat_cli.services.webhooks.delivery import check_url
    from cloudchat_cli.services.webhooks.listener import ListenConfig, Listener
    from cloudchat_cli.services.webhooks.queue import ForwardPolicy, parse_duration

    if forward_to is not None:
        check_url(forward_to)
    policy = ForwardPolicy(
        delays=_delays(forward_retry_delays),
        max_delay=parse_duration(forward_max_delay, "--forward-max-delay"),
        give_up_after=parse_duration(forward_give_up_after, "--forward-give-up-after"))
    status_interval = parse_duration(status_every, "--status-every")
    if print_unit:
        _print_unit(no_verify)
        return
    steady_gc()
    if path is not None and not path.startswith("/"):
        path = "/" + path
    store = _dedupe_store(ctx, dedupe_store)
    secrets: list[str] = []
    if no_verify:
        from cloudchat_cli.core import credentials

        credentials.refuse_argv_secret(credentials.WEBHOOK_SECRET, secret)
        console.warn("--no-verify: events are accepted without checking their signature")
    else:
        secrets = _secrets(ctx, secret_file, secret)
    config = ListenConfig(host=host, port=port, path=path, secrets=secrets,
                          verify=not no_verify, max_body=max_body, save_dir=save,
                          forward_to=forward_to, exec_cmd=exec_cmd, read_timeout=read_timeout,
                          forward_policy=policy, verbose=verbose,
                          status_interval=max(status_interval, 0.1),
                          on_event=_optout_hook(ctx, optout_keywords), dedupe_store=store,
                          dedupe_ttl=_duration("--dedupe-ttl", dedupe_ttl),
                          dedupe_claim_ttl=_duration("--dedupe-claim-ttl", dedupe_claim_ttl))
    printer = DeliveryPrinter(json_out=json_out)
    try:
        listener = Listener(config, on_delivery=printer.delivery, on_notice=console.info)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="pick another --port (0 chooses a free one)") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.warn(f"listening on {host}: other machines can send events to this listener")
    console.info(f"Listening on {listener.url()} — Ctrl-C to stop")
    if listener.queue is not None:
        console.info(f"Forwarding to {forward_to}; events wait for it in {listener.store.dir}")
    if listener.dedupe is not None:
        console.info(f"Deduplicating with every replica using {listener.dedupe.shown}")
    try:
        listener.serve_forever()  # returns after Ctrl-C/SIGTERM, deliveries in flight done
    except Interrupted:
        pass  # a signal that arrived before the loop took over its handlers
    finally:
        listener.shutdown()
    waiting = ""
    if listener.queue is not None:
        left = listener.queue.waiting
        waiting = (f"; {left} waiting to be forwarded (kept in {listener.store.dir}: the next "
                   "run resumes them)" if left else "; nothing waiting to be forwarded")
    console.info(f"Stopped after {printer.accepted} event(s), {printer.duplicates} duplicate(s), "
                 f"{printer.rejected} rejected at {time.strftime('%H:%M:%S')}{waiting}.")


def _print_unit(no_verify: bool) -> None:
    import getpass
    import os

    from cloudchat_cli.core import paths
    from cloudchat_cli.services.webhooks.unit import systemd_unit

    typer.echo(systemd_unit(sys.argv, cwd=Path.cwd(), user=getpass.getuser(),
                            state_dir=paths.state_dir().absolute(),
                            config_dir=paths.config_dir().absolute(),
                            profile=os.environ.get("CLOUDCHAT_PROFILE"),
                            secret_file_env=os.environ.get("CLOUDCHAT_WEBHOOK_SECRET_FILE"),
                            no_verify=no_verify), nl=False)


REPLAY_EPILOG = """[bold]Examples[/bold]

  cloudchat webhook replay ./events --to http://127.0.0.1:3000/
  cloudchat webhook replay ./events --to http://127.0.0.1:3000/ --since 2h
  cloudchat webhook replay ./events --to http://127.0.0.1:3000/ --all

Each event is posted byte-exact with the headers CloudChat sent (its signature included), \
oldest first, retried like `trigger`; the first that is still refused stops the replay. \
--id EVT picks events by id. Delivered events are marked in DIR/forward.sqlite. \
Exit 0 all delivered, 6 the app kept answering 5xx, 7 it never answered, 1 another answer \
(or unreadable event files), 2 bad input.
"""


@app.command("replay", epilog=REPLAY_EPILOG)
def replay_cmd(
    directory: Path = typer.Argument(..., help="The directory `webhook listen --save` wrote.",
                                     file_okay=False, show_default=False),
    to: str = typer.Option(..., "--to", help="Your webhook endpoint.", show_default=False),
    replay_all: bool = typer.Option(False, "--all/--only-undelivered",
                                    help="Also send events already delivered."),
    since: str | None = typer.Option(
        None, "--since", help="Only events received since: 2h, 3d, 2026-11-26T08:00, or epoch "
        "seconds.", show_default=False),
    ids: list[str] = typer.Option([], "--id", help="Only this event id (repeatable).",
                                  show_default=False),
    no_retry: bool = typer.Option(False, "--no-retry", help="One attempt per event."),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Re-post saved events, byte-exact and with their original signature, in arrival order."""
    from cloudchat_cli.core.errors import CloudChatError, ExitCode
    from cloudchat_cli.services.webhooks import replay
    from cloudchat_cli.services.webhooks.delivery import check_url

    check_url(to)
    cutoff = replay.parse_since(since, time.time()) if since is not None else None
    chosen, unreadable = replay.select(directory, include_delivered=replay_all, since=cutoff,
                                       ids=ids)
    for name in unreadable:
        console.warn(f"{name} is not a complete saved event: skipped")

    def shown(item, attempt, delay) -> None:
        if json_out or (attempt.ok and attempt.number == 1):
            return
        what = (f"HTTP {attempt.status}" if attempt.status is not None
                else f"no answer ({attempt.error})")
        tail = f"; retrying in {delay:g} s" if delay else ""
        console.info(f"{item.meta.get('id') or item.key}: attempt {attempt.number}: {what}{tail}")

    result = replay.replay(directory, chosen, to, retry=not no_retry, on_attempt=shown)
    if json_out:
        console.print_json({"delivered": [e.meta.get("id") for e in result.delivered],
                            "failed": result.failed.meta.get("id") if result.failed else None,
                            "not_sent": result.left, "unreadable": unreadable})
    elif not chosen:
        console.info("nothing to replay (every selected event was delivered already: --all "
                     "sends them again)")
    else:
        for item in result.delivered:
            console.out().print(f"delivered {console.escape(str(item.meta.get('id')))}")
        console.info(f"{len(result.delivered)} of {len(chosen)} event(s) delivered to {to}")
    if result.failed is not None:
        last = result.attempts[-1]
        code = (ExitCode.NETWORK if last.status is None
                else ExitCode.SERVER if last.status >= 500 else ExitCode.FAILURE)
        raise CloudChatError(
            f"{to} did not accept {result.failed.meta.get('id') or result.failed.key} after "
            f"{len(result.attempts)} attempt(s): "
            + (f"HTTP {last.status} {last.body}" if last.status is not None else str(last.error))
            + f"; {result.left} later event(s) not sent (order is kept)", exit_code=code)
    if unreadable:
        raise typer.Exit(int(ExitCode.FAILURE))
