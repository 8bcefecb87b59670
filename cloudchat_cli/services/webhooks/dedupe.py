"""Webhook dedupe shared by listener replicas through Redis (``--dedupe-store URL``).

Behind a load balancer, CloudChat's retry of an event may land on another replica than the
first attempt. Each replica therefore *claims* an event's id in Redis before saving it (one Lua
script: set if absent, with a short TTL) and marks it *done* only once it is saved (TTL
``--dedupe-ttl``, 7 days by default). A failed save releases the claim, so the retry is taken.
A delivery whose id another replica has claimed but not finished gets a 503: CloudChat retries
it, and by then it is done (a 200 "duplicate") or free again. So a 200 still means "saved
somewhere".

A replica that dies holding a claim cannot release it: the claim expires by itself after the
claim TTL (10 s by default: above CloudChat's 5 s deadline, so a save that takes longer has
already failed in CloudChat's eyes, and below the 14 s after which it sends its last retry, so
that retry is taken by a live replica).

Keys: ``cloudchat:{<namespace>}:evt:<sha256 of the event id>``, the namespace a salted hash of
the webhook secret that verified the delivery (so two Apps sharing one Redis never see each
other's ids, and during a rotation replicas still agree: CloudChat signs with one secret at a
time). Values: ``done`` or ``c:<claim token>``. No event id, body or secret is written, and
every key carries a TTL.

Redis unreachable: fail closed, never a 200 without the shared check (the delivery gets a 503).
``redis`` is imported only here, and only when a store is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from cloudchat_cli.core import redisurl
from cloudchat_cli.core.errors import NetworkError

DEFAULT_TTL = 7 * 86400.0
DEFAULT_CLAIM_TTL = 10.0
SETTING = "webhook_dedupe_store"

# KEYS the events (one hash tag: one slot); ARGV[2i-1], ARGV[2i] the value to set on KEYS[i]
# when it is absent and its TTL (ms). Atomic on the server, whatever other replicas do.
CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[2 * i - 1], 'NX', 'PX', ARGV[2 * i]) then out[i] = 'new'
  elseif redis.call('GET', key) == 'done' then out[i] = 'done'
  else out[i] = 'busy' end
end
return out
"""
# KEYS saved events; ARGV[1] the TTL (ms) of their done marks.
DONE = """
for _, key in ipairs(KEYS) do redis.call('SET', key, 'done', 'PX', ARGV[1]) end
return #KEYS
"""
MAX_BATCH = 256
# KEYS[1]; ARGV our claim value: drop it only if it is still ours (not done, not another's).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def namespace(secret: str | None) -> str:
    """The hash tag of a secret's events (a salted hash, never the secret)."""
    seed = (b"unverified" if secret is None
            else b"secret\0" + secret.encode("utf-8", "surrogatepass"))
    return hashlib.sha256(b"cloudchat-webhook-dedupe\0" + seed).hexdigest()[:16]


def event_hash(ident: str) -> str:
    return hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()


def key_for(ns: str, ident: str) -> str:
    """The Redis key of one event id (or ``body:<sha256>`` for an event without an id)."""
    return f"cloudchat:{{{ns}}}:evt:{event_hash(ident)}"


class DedupeUnavailable(Exception):
    """The store could not be asked: the delivery must not be acknowledged."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Claim:
    key: str
    value: str
    verdict: str  # new | done | busy
    ns: str = ""


class DedupeStore:
    """Claims and done-marks in one Redis, for the listener's event loop (redis.asyncio).

    ``check()`` is the start-up probe (blocking); the async methods run on the loop that serves.
    """

    def __init__(self, url: str, *, ttl: float = DEFAULT_TTL,
                 claim_ttl: float = DEFAULT_CLAIM_TTL, timeout: float = 2.0):
        from cloudchat_cli.core import redisclient

        self.url = url
        self.shown = redisurl.mask_url(url)
        self.ttl_ms = max(1, int(ttl * 1000))
        self.claim_ttl_ms = max(1, int(claim_ttl * 1000))
        self.claim_ttl = claim_ttl
        self.timeout = timeout
        # Exit 2 with the install command without the [redis] extra; a bad URL is exit 2 too.
        self._sync = redisclient.connect(url, timeout=timeout, setting=SETTING)
        self._client: Any = None
        self._cluster = False  # a Redis Cluster node: the client follows the cluster
        self._scripts: dict[str, Any] = {}
        self._owner = secrets.token_hex(6)  # this replica, in its claims' values
        self._count = itertools.count(1)
        self._claims = _Batches(self._claim_batch)
        self._dones = _Batches(self._done_batch)

    def check(self) -> None:
        """Fail now (exit 7, the store named, the password masked) if it cannot be used."""
        import redis

        try:
            try:
                self._sync.ping()
                self._sync.script_load(CLAIM)  # scripting allowed for this user (ACLs)?
                with contextlib.suppress(redis.exceptions.NoPermissionError):
                    found = self._sync.info("cluster")
                    self._cluster = bool(int(found.get("cluster_enabled", 0)))
            finally:
                self._sync.close()
        except redis.RedisError as exc:
            raise NetworkError(
                f"{SETTING} {self.shown} {_what(exc)}: {self._reason(exc)} — not listening",
                hint="start or fix Redis (every replica needs it to answer 200), or listen "
                "without --dedupe-store (then each replica deduplicates only what it receives)",
            ) from None

    def _reason(self, exc: BaseException) -> str:
        return redisurl.scrub(str(exc) or type(exc).__name__, self.url)

    def _ready(self) -> None:
        if self._client is not None:
            return
        import redis.asyncio as aredis

        # Created on the serving loop (its connections belong to it). No retries of our own:
        # a failure is a 503, and CloudChat's retry is the retry.
        kind = aredis.RedisCluster if self._cluster else aredis.Redis
        self._client = kind.from_url(
            self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
            decode_responses=True, client_name="cloudchat-cli-listen")
        self._scripts = {name: self._client.register_script(text)
                         for name, text in (("claim", CLAIM), ("done", DONE),
                                            ("release", RELEASE))}

    async def _call(self, what: str, coro_factory) -> Any:
        import redis

        try:
            self._ready()
            return await coro_factory()
        except (redis.RedisError, OSError) as exc:
            raise DedupeUnavailable(f"dedupe store {self.shown} {_what(exc)} ({what}): "
                                    f"{self._reason(exc)}") from None

    async def claim(self, ns: str, ident: str, *, final: bool = False) -> Claim:
        """Claim an event for this replica: ``new`` (ours to save), ``done`` (saved by some
        replica), or ``busy`` (another replica is on it). ``final``: nothing to save, the
        event is done as soon as it is ours (one round trip)."""
        key = key_for(ns, ident)
        value = "done" if final else f"c:{self._owner}:{next(self._count)}"
        ttl = self.ttl_ms if final else self.claim_ttl_ms
        verdict = await self._claims.submit(ns, (key, value, ttl))
        return Claim(key, value, verdict, ns)

    async def done(self, claim: Claim) -> None:
        """Mark a saved event done (kept ``--dedupe-ttl``)."""
        await self._dones.submit(claim.ns, claim.key)

    async def _claim_batch(self, items: list[tuple[str, str, int]]) -> list[str]:
        args = [x for _, value, ttl in items for x in (value, ttl)]
        return await self._call("claim", lambda: self._scripts["claim"](
            keys=[key for key, _, _ in items], args=args))

    async def _done_batch(self, keys: list[str]) -> list[None]:
        await self._call("mark done", lambda: self._scripts["done"](keys=keys,
                                                                    args=[self.ttl_ms]))
        return [None] * len(keys)

    async def release(self, claim: Claim) -> None:
        """Let CloudChat's retry be taken (by any replica) after a failed save."""
        await self._call("release", lambda: self._scripts["release"](
            keys=[claim.key], args=[claim.value]))

    async def aclose(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()


class _Batches:
    """Requests made while a call is on its way go together in the next one (a group commit,
    like the event store's): under 50 concurrent deliveries one script call claims many
    events, instead of one round trip and one client call each. One batch per hash tag, so
    a batch's keys share a Cluster slot."""

    def __init__(self, send):
        self._send = send
        self._pending: dict[str, list[tuple[Any, asyncio.Future]]] = {}
        self._task: asyncio.Task | None = None

    async def submit(self, tag: str, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.setdefault(tag, []).append((item, future))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batches, self._pending = self._pending, {}
                calls = [self._one(items[i:i + MAX_BATCH]) for items in batches.values()
                         for i in range(0, len(items), MAX_BATCH)]
                await asyncio.gather(*calls)
        finally:
            self._task = None

    async def _one(self, items: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await self._send([item for item, _ in items])
        except Exception as exc:  # DedupeUnavailable: every request of the batch gets it
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(items, results, strict=True):
            if not future.done():
                future.set_result(result)


def _what(exc: BaseException) -> str:
    import redis

    if isinstance(exc, redis.AuthenticationError):
        return "refused the credentials"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
        return "is unreachable"
    return "failed"
