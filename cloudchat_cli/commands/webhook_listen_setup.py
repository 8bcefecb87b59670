"""``webhook listen``: its help, and its flags turned into a ``ListenConfig`` (exit 2 if bad)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cloudchat_cli.commands.webhook_common import SECRET_NOTE
from cloudchat_cli.output import console

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


def delays(text: str) -> tuple[float, ...]:
    from cloudchat_cli.core.errors import UsageError

    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = (-1.0,)
    if any(d < 0 or d > 3600 for d in values):
        raise UsageError(f"--forward-retry-delays {text!r}: give seconds like 2,4,8 (or '' for "
                         "no retry)")
    return values


def duration(flag: str, text: str) -> float:
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


def dedupe_store(ctx: typer.Context, flag: str | None) -> str | None:
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


def optout_hook(ctx: typer.Context, keywords: str | None):
    if keywords is None:
        return None
    from cloudchat_cli.services import optout

    cfg = ctx.obj.settings()
    return optout.keyword_handler(cfg.profile, optout.parse_keywords(keywords), console.info,
                                  default_country_code=cfg.default_country_code)


def print_unit(env, no_verify: bool) -> None:
    import getpass

    from cloudchat_cli.core import paths
    from cloudchat_cli.services.webhooks.unit import systemd_unit

    typer.echo(systemd_unit(sys.argv, cwd=Path.cwd(), user=getpass.getuser(),
                            state_dir=paths.state_dir(env).absolute(),
                            config_dir=paths.config_dir(env).absolute(),
                            profile=env.get("CLOUDCHAT_PROFILE"),
                            secret_file_env=env.get("CLOUDCHAT_WEBHOOK_SECRET_FILE"),
                            no_verify=no_verify), nl=False)
