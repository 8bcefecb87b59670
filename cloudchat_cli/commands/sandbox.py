"""``cloudchat sandbox``: run the local CloudChat emulator in the foreground."""

from __future__ import annotations

import sys

import typer

from cloudchat_cli.output import console

EPILOG = """[bold]Examples[/bold]

  cloudchat sandbox                                    any sk_test_… key, 60 requests/min
  cloudchat sandbox --port 0 --rate-limit 5 --rate-window 2 --record calls.jsonl
  cloudchat sandbox --latency 1.5 --fail-rate 0.1 --seed 7          a slow, flaky server

Then, in another shell:
  CLOUDCHAT_BASE_URL=http://127.0.0.1:8787/api/public/v1 CLOUDCHAT_API_KEY=sk_test_x \\
    cloudchat send 6281234567890 "Halo"

Conventions: keys starting with sk_test_ro_ are read-only (403 on POST /messages);
WhatsApp numbers ending in 0000 are "not on WhatsApp" (400 invalid_recipient).
"""


def sandbox(
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print accepted messages."),
) -> None:
    """Run a local CloudChat API emulator (no account needed)."""
    from cloudchat_cli.core.errors import Interrupted, UsageError
    from cloudchat_cli.sandbox.server import SandboxConfig, SandboxServer

    config = SandboxConfig(
        host=host, port=port, keys=list(key), rate_limit=rate_limit, rate_window=rate_window,
        latency=latency, fail_rate=fail_rate, drop_rate=drop_rate, seed=seed, record=record,
        quiet=quiet,
    )
    try:
        server = SandboxServer(config, out=sys.stdout)
    except OSError as exc:
        if record and exc.filename == record:
            raise UsageError(f"cannot open --record file {record}: {exc.strerror}") from None
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 chooses a free one)",
        ) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.warn(f"listening on {host}: other machines can reach this sandbox")
    sys.stdout.write(f"CloudChat sandbox listening on {server.base_url}\n")
    sys.stdout.flush()
    console.info(
        f"rate limit {rate_limit} per {rate_window:g} s per key; "
        f"keys: {'the ones given' if key else 'any sk_test_…'}; Ctrl-C to stop"
    )
    try:
        server.serve_forever()
    except Interrupted:
        console.info("Sandbox stopped.")
    finally:
        server.httpd.server_close()
        server.state.close()
