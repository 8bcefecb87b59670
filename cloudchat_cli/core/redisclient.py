"""Redis connections for the stores shared between machines (the rate-limit window today).

Imported only when a Redis URL is configured; ``redis`` (the optional extra) only inside.
"""

from __future__ import annotations

from typing import Any

from cloudchat_cli.core import redisurl
from cloudchat_cli.core.errors import NetworkError, UsageError


def connect(url: str, *, timeout: float = 5.0, cluster: bool = False,
            setting: str = "rate_store") -> Any:
    """A redis-py client for ``url`` (a Cluster client with ``cluster``); exit 2 with the
    install command when the extra is absent. ``setting`` names the URL's origin in errors."""
    try:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry
    except ImportError:
        raise UsageError(
            f"{setting} is {redisurl.mask_url(url)}, but the Redis client is not installed",
            hint=f"install it with: {redisurl.INSTALL}"
            + (" (or set CLOUDCHAT_RATE_STORE=local)" if setting == "rate_store" else ""),
        ) from None
    errors = (redis.ConnectionError, redis.TimeoutError)
    try:
        if cluster:
            return RedisCluster.from_url(url, socket_timeout=timeout,
                                         socket_connect_timeout=timeout, decode_responses=True)
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            # A blip is retried briefly; a dead server fails closed within a second or so.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=errors),
            client_name="cloudchat-cli",
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{setting} {redisurl.mask_url(url)} is not usable: "
            f"{redisurl.scrub(str(exc), url)}"
        ) from None


def probe(client: Any, url: str) -> dict[str, Any]:
    """Server name/version, one script round trip, and the server clock's offset from ours
    (for ``config doctor``). Running a script also proves scripting is allowed (ACLs)."""
    import time

    import redis

    try:
        info = client.info("server")
        started = time.perf_counter()
        seconds, micros = client.eval("return redis.call('TIME')", 0)
        ours = time.time()
        rtt = time.perf_counter() - started
    except redis.RedisError as exc:
        raise NetworkError(
            f"{redisurl.mask_url(url)}: {redisurl.scrub(str(exc) or type(exc).__name__, url)}"
        ) from None
    name = "Valkey" if "valkey_version" in info else "Redis"
    version = info.get("valkey_version") or info.get("redis_version") or "?"
    offset = int(seconds) + int(micros) / 1e6 - (ours - rtt / 2)
    return {"server": f"{name} {version}", "rtt": rtt, "clock_offset": offset}
