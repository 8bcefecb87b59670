"""The throttle's slots in Redis, shared by every machine that uses the key.

The same guarantee as the SQLite store, for processes that share nothing but a Redis server:
every decision is one Lua script (atomic on the server), and every time in it is the server's
own clock (``TIME``), so machines whose clocks disagree still agree on the window. Callers'
times only become durations (``hold_until - now``) on the way in and are mapped back on the
way out.

Keys: ``cloudchat:{<key hash>}:slots`` (a sorted set, member ``<id>f`` while in flight or
``<id>d`` once answered, score = expiry) and ``cloudchat:{<key hash>}:meta`` (a hash: 429 block,
last send, pacing, id counter, each budget's last send), and for a broadcast's budget
``cloudchat:{<key hash>}:budget:<name>`` (its own slots, the same members and scores as in
the first set). The braces are a Cluster hash tag: all keys live in one slot.
Nothing else is written — no key, recipient or text. Every write renews a TTL just past the
last expiry it holds, so an abandoned App's keys disappear. A holder that dies keeps its slot
until it was due anyway: taken + timeout + window + margin (no process table to look at here).

A store that cannot be reached fails closed: no slot, no request (``NetworkError``, exit 7).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from cloudchat_cli.core import redisurl
from cloudchat_cli.core.errors import NetworkError
from cloudchat_cli.core.redisclient import connect
from cloudchat_cli.core.throttle import POLL, Budget, WindowState, key_hash

# Kept after the last expiry so a 429 block, pacing and the id counter outlive the slots briefly.
META_GRACE = 3600.0

_PRELUDE = """
local POLL = @POLL@
local META_GRACE = @GRACE@
local function now_of(arg)
  if arg ~= '' then return tonumber(arg) end
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function meta(field)
  return tonumber(redis.call('HGET', KEYS[2], field) or '0') or 0
end
local function live(now, key)
  key = key or KEYS[1]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local raw = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local slots = {}
  for i = 1, #raw, 2 do
    slots[#slots + 1] = {tonumber(raw[i + 1]), string.sub(raw[i], -1) == 'f'}
  end
  return slots
end
local function renew(now)
  local last = now
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #top == 2 then
    last = tonumber(top[2])
    redis.call('PEXPIRE', KEYS[1], math.ceil((last - now) * 1000) + 1000)
  end
  if KEYS[3] then
    local own = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
    if #own == 2 then
      redis.call('PEXPIRE', KEYS[3], math.ceil((tonumber(own[2]) - now) * 1000) + 1000)
    end
  end
  last = math.max(last, meta('blocked_until'))
  redis.call('PEXPIRE', KEYS[2], math.ceil((last - now + META_GRACE) * 1000))
end
-- The policy of core/throttle.py's next_try, line for line (a test checks they agree).
local function next_try(now, limit, slots, blocked, paced, settle)
  local other = 0
  if blocked > now then other = blocked end
  if paced > now and paced > other then other = paced end
  local slot_free, estimate, flying = 0, 0, false
  for _, s in ipairs(slots) do if s[2] then flying = true end end
  if #slots >= limit then
    local k = #slots - limit + 1
    local hard, soft = {}, {}
    for i, s in ipairs(slots) do
      hard[i] = s[1]
      if s[2] then soft[i] = math.min(s[1], settle) else soft[i] = s[1] end
    end
    table.sort(hard)
    table.sort(soft)
    slot_free, estimate = hard[k], soft[k]
  end
  if math.max(other, slot_free) <= now then return nil end
  local eta = math.max(other, estimate)
  if slot_free > other and flying then
    return {math.max(other, math.min(slot_free, now + POLL)), eta}
  end
  return {math.max(other, slot_free), eta}
end
-- core/throttle.py's decide: the App's window and, given own = {limit, slots, paced}, a budget.
local function decide(now, limit, slots, blocked, paced, settle, own)
  local shared = next_try(now, limit, slots, blocked, paced, settle)
  if not own then return shared end
  local mine = next_try(now, own[1], own[2], 0, own[3], settle)
  if not shared then return mine end
  if not mine then return shared end
  return {math.max(shared[1], mine[1]), math.max(shared[2], mine[2])}
end
""".replace("@POLL@", repr(POLL)).replace("@GRACE@", repr(META_GRACE))

# ARGV: now override ('' = server TIME), limit, hold, pace, settle (durations from now), then
# for a budget (KEYS[3], its own slots): its name, limit and pace.
ACQUIRE = _PRELUDE + """
local now = now_of(ARGV[1])
local limit = tonumber(ARGV[2])
local pace = tonumber(ARGV[4])
local paced = 0
if pace > 0 then paced = meta('last_sent') + pace end
local own = nil
if KEYS[3] then
  local bpace = tonumber(ARGV[8])
  local bpaced = 0
  local sent = redis.call('HGET', KEYS[2], 'sent:' .. ARGV[6])
  if bpace > 0 and sent then bpaced = tonumber(sent) + bpace end
  own = {tonumber(ARGV[7]), live(now, KEYS[3]), bpaced}
end
local d = decide(now, limit, live(now), meta('blocked_until'), paced, now + tonumber(ARGV[5]),
                 own)
if d then return {'wait', fmt(now), fmt(d[1]), fmt(d[2])} end
if redis.call('HEXISTS', KEYS[2], 'seq') == 0 then
  -- Seeded from the clock so ids never repeat even after the keys expired.
  redis.call('HSET', KEYS[2], 'seq', string.format('%d', math.floor(now * 1000)))
end
local id = string.format('%d', redis.call('HINCRBY', KEYS[2], 'seq', 1))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id .. 'f')
redis.call('HSET', KEYS[2], 'last_sent', fmt(now))
if KEYS[3] then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), id .. 'f')
  redis.call('HSET', KEYS[2], 'sent:' .. ARGV[6], fmt(now))
end
renew(now)
return {'ok', fmt(now), id}
"""

# ARGV: now override, slot id, hold after the answer (window + margin)
RELEASE = _PRELUDE + """
local now = now_of(ARGV[1])
local flying = ARGV[2] .. 'f'
if redis.call('ZSCORE', KEYS[1], flying) then
  redis.call('ZREM', KEYS[1], flying)
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2] .. 'd')
  if KEYS[3] and redis.call('ZREM', KEYS[3], flying) == 1 then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2] .. 'd')
  end
  renew(now)
end
return fmt(now)
"""

# ARGV: now override, budget name. Its spacing counts from now (never moved back).
SENT = _PRELUDE + """
local now = now_of(ARGV[1])
local field = 'sent:' .. ARGV[2]
if now > meta(field) then redis.call('HSET', KEYS[2], field, fmt(now)) end
renew(now)
return fmt(now)
"""

# ARGV: now override, seconds
BLOCK = _PRELUDE + """
local now = now_of(ARGV[1])
local untl = now + tonumber(ARGV[2])
if untl > meta('blocked_until') then redis.call('HSET', KEYS[2], 'blocked_until', fmt(untl)) end
renew(now)
return fmt(now)
"""

# ARGV: now override, 1/0
PACING = _PRELUDE + """
local now = now_of(ARGV[1])
redis.call('HSET', KEYS[2], 'pacing', ARGV[2])
renew(now)
return fmt(now)
"""

# ARGV: now override. A consistent snapshot: now, blocked_until, pacing, then expiry/flag pairs.
STATE = _PRELUDE + """
local now = now_of(ARGV[1])
local out = {fmt(now), fmt(meta('blocked_until')), tostring(meta('pacing'))}
for _, s in ipairs(live(now)) do
  out[#out + 1] = fmt(s[1])
  out[#out + 1] = s[2] and '1' or '0'
end
return out
"""

# Test hook: the Lua decide on given inputs. ARGV: now, limit, blocked, paced, settle, the
# number of slots, their expiry/flag pairs, then optionally a budget's limit, paced-until and
# its slots' pairs. Touches no key.
DECIDE = _PRELUDE + """
local function pairs_from(first, last)
  local slots = {}
  for i = first, last, 2 do slots[#slots + 1] = {tonumber(ARGV[i]), ARGV[i + 1] == '1'} end
  return slots
end
local n = tonumber(ARGV[6])
local slots = pairs_from(7, 6 + 2 * n)
local own = nil
if #ARGV > 6 + 2 * n then
  local b = 7 + 2 * n
  own = {tonumber(ARGV[b]), pairs_from(b + 2, #ARGV), tonumber(ARGV[b + 1])}
end
local d = decide(tonumber(ARGV[1]), tonumber(ARGV[2]), slots, tonumber(ARGV[3]),
                 tonumber(ARGV[4]), tonumber(ARGV[5]), own)
if not d then return {} end
return {fmt(d[1]), fmt(d[2])}
"""


# The least a Redis ACL user needs: the scripts, what they call, and what the client sends on
# connect (doctor adds INFO). The README gives it as an `ACL SETUSER` line.
ACL = ("~cloudchat:* +@scripting +time +zrange +zadd +zrem +zscore +zremrangebyscore +hget "
       "+hset +hexists +hincrby +pexpire +ping +info +client|setname")


def keys_for(api_key: str, budget: Budget | None = None) -> list[str]:
    tag = "cloudchat:{" + key_hash(api_key) + "}"
    own = [f"{tag}:budget:{budget.name}"] if budget is not None else []
    return [tag + ":slots", tag + ":meta", *own]


class RedisStore:
    """A ``SlotStore`` on a Redis server; safe across threads, processes and machines."""

    def __init__(
        self,
        client: Any,
        api_key: str,
        *,
        url: str,
        window: float,
        margin: float,
        server_clock: Callable[[], float] | None = None,
        debug: Callable[[str], None] | None = None,
        timeout: float = 5.0,
    ):
        self.url = url
        self.shown_url = redisurl.mask_url(url)
        self.where = f"every machine using {self.shown_url}"
        self.window = window
        self.margin = margin
        self._api_key = api_key
        self._keys = keys_for(api_key)
        self._timeout = timeout
        self._cluster = False
        self._switch = threading.Lock()
        # Only tests replace the server's clock (to drive the store with a fake one).
        self._server_clock = server_clock
        self._debug = debug or (lambda message: None)
        self._use(client)

    def _use(self, client: Any) -> None:
        self._client = client
        self._scripts = {
            name: client.register_script(text)
            for name, text in (("acquire", ACQUIRE), ("release", RELEASE), ("block", BLOCK),
                               ("pacing", PACING), ("state", STATE), ("decide", DECIDE),
                               ("sent", SENT))
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken connection must not mask the outcome
            self._client.close()

    # --- one script call, failing closed --------------------------------------------------

    def _now_arg(self) -> str:
        return "" if self._server_clock is None else repr(self._server_clock())

    def _run(self, name: str, *args: Any, budget: Budget | None = None) -> Any:
        import redis

        client, scripts = self._client, self._scripts
        keys = self._keys if budget is None else keys_for(self._api_key, budget)
        try:
            try:
                return scripts[name](keys=keys, args=[self._now_arg(), *args])
            except redis.exceptions.MovedError:
                # The URL names one node of a Redis Cluster that does not hold this App's slot
                # (the script did not run): follow the cluster from now on. Several threads
                # may get here at once; one switches, the others use its client.
                with self._switch:
                    if self._client is client:
                        if self._cluster:
                            raise
                        self._debug(f"rate store {self.shown_url} is a Redis Cluster node")
                        self._cluster = True
                        self._use(connect(self.url, timeout=self._timeout, cluster=True))
                return self._scripts[name](keys=keys, args=[self._now_arg(), *args])
        except redis.RedisError as exc:
            raise self._error(exc, name) from None

    def _error(self, exc: Exception, name: str) -> NetworkError:
        import redis

        reason = redisurl.scrub(str(exc) or type(exc).__name__, self.url)
        self._debug(f"rate store {self.shown_url}: {type(exc).__name__}: {reason}")
        if isinstance(exc, redis.AuthenticationError):  # (a ConnectionError subclass)
            what = "refused the credentials"
        elif isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            what = "is unreachable"
        else:
            what = "failed"
        fix = "start or fix Redis"
        if isinstance(exc, redis.exceptions.NoPermissionError):
            fix = f"give the Redis user the rights in the README ({ACL})"
        return NetworkError(
            f"rate-limit store {self.shown_url} {what}: {reason}"
            + (" — nothing was sent" if name == "acquire" else ""),
            hint=f"{fix} and run again; to use this machine's own window instead, "
            "set CLOUDCHAT_RATE_STORE=local (other machines' requests are then not counted)",
        )

    # --- the SlotStore protocol -----------------------------------------------------------

    def try_acquire(self, now, limit, hold_until, pace, settle, budget=None):
        own = [] if budget is None else [budget.name, budget.limit, repr(budget.pace)]
        reply = self._run("acquire", limit, repr(hold_until - now), repr(pace),
                          repr(settle - now), *own, budget=budget)
        server_now = float(reply[1])
        if reply[0] == "ok":
            return int(reply[2]), (0.0, 0.0)

        def mine(t: str) -> float:  # a server time on the caller's clock
            return now + (float(t) - server_now)

        return None, (mine(reply[2]), mine(reply[3]))

    def release(self, slot, expires_at, now, budget=None):
        """Shorten an answered slot to window + margin from now. If Redis is gone, keep quiet:
        the request was sent, and the slot expires by itself at its longest hold anyway."""
        try:
            self._run("release", str(slot), repr(expires_at - now), budget=budget)
        except NetworkError as exc:
            self._debug(f"slot {slot} not released ({exc.message}); it expires by itself")

    def mark_sent(self, budget, now):
        self._run("sent", budget.name, budget=budget)

    def block(self, until, now):
        self._run("block", repr(max(0.0, until - now)))

    def set_pacing(self, on):
        self._run("pacing", "1" if on else "0")

    def state(self, now, limit):
        reply = self._run("state")
        server_now = float(reply[0])

        def mine(t: float) -> float:
            return now + (t - server_now)

        live = [(float(reply[i]), reply[i + 1] == "1") for i in range(3, len(reply), 2)]
        expiries = sorted(mine(e) for e, _ in live)
        blocked = float(reply[1])
        return WindowState(
            limit=limit,
            used=len(live),
            next_free_at=expiries[len(expiries) - limit] if len(expiries) >= limit else None,
            blocked_until=mine(blocked) if blocked > server_now else 0.0,
            in_flight=sum(1 for _, f in live if f),
            pacing=reply[2] == "1",
        )

    # --- for config doctor and tests ------------------------------------------------------

    def decide(self, now, limit, slots, blocked, paced, settle, own=None):
        """Run the Lua ``decide`` alone (tests compare it with the Python one)."""
        args = [repr(now), repr(limit), repr(blocked), repr(paced), repr(settle),
                str(len(slots))]
        for expiry, flying in slots:
            args += [repr(expiry), "1" if flying else "0"]
        if own is not None:
            args += [repr(own[0]), repr(own[2])]
            for expiry, flying in own[1]:
                args += [repr(expiry), "1" if flying else "0"]
        reply = self._scripts["decide"](keys=[], args=args)
        return None if not reply else (float(reply[0]), float(reply[1]))


def ttl_ms(client: Any, api_key: str) -> dict[str, int]:
    """Each key's remaining time to live in ms (-1: none, -2: absent); for tests."""
    return {key: client.pttl(key) for key in keys_for(api_key)}
