"""``config doctor``'s look at the rate-limit store: where the window lives, and for Redis
whether it answers, which server it is and how far away."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudchat_cli.core import paths, redisurl
from cloudchat_cli.core.errors import CloudChatError

if TYPE_CHECKING:
    from cloudchat_cli.services.session import Session


def check_rate_store(session: Session) -> tuple[bool, str]:
    """(ok, detail): one doctor line for ``rate_store``; never raises for what it finds."""
    cfg = session.settings()
    url = cfg.rate_store
    if url == redisurl.LOCAL:
        return True, f"local: shared by the processes of this machine ({paths.state_dir()})"
    from cloudchat_cli.core import redisclient

    shown = redisurl.mask_url(url)
    try:
        client = redisclient.connect(url, timeout=min(cfg.timeout, 5.0))
        try:
            found = redisclient.probe(client, url)
        finally:
            client.close()
    except CloudChatError as exc:
        return False, f"{exc.message}" + (f" — {exc.hint}" if exc.hint else "")
    detail = (f"{shown}: {found['server']}, round trip {found['rtt'] * 1000:.1f} ms; "
              "the window is shared by every machine using it")
    if abs(found["clock_offset"]) > 1:
        detail += (f" (server clock {found['clock_offset']:+.1f} s from this machine's: "
                   "harmless, the window runs on the server's clock)")
    return True, detail
