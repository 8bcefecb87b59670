"""The local CloudChat emulator: ``POST /api/public/v1/messages`` per the contract, over HTTP/1.1.

The HTTP layer is ``sandbox/http11.py`` (h11, a thread per connection); this module holds the
routes and the shared state. It starts in milliseconds inside ``cloudchat --sandbox``.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from cloudchat_cli.sandbox.contract import CHANNELS, check_message
from cloudchat_cli.sandbox.http11 import App, FramingError, Request, Response, ThreadedServer
from cloudchat_cli.sandbox.jsonbody import InvalidJSON, dumps, parse_json
from cloudchat_cli.sandbox.ratelimit import RollingWindow

API_PREFIX = "/api/public/v1"
READ_ONLY_PREFIX = "sk_test_ro_"


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    keys: list[str] = field(default_factory=list)  # empty: any sk_test_… key
    rate_limit: int = 60
    rate_window: float = 60.0
    latency: float = 0.0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int | None = None
    record: str | None = None
    quiet: bool = False
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    status_delay: float = 0.2


def key_id(key: str) -> str:
    """A short, non-reversible name for a key, for logs and records."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class SandboxState:
    """Everything the handlers share: limiter, faults, accepted messages, the record file."""

    def __init__(self, config: SandboxConfig, out: TextIO | None, clock: Callable[[], float]):
        self.config = config
        self.limiter = RollingWindow(config.rate_limit, config.rate_window, clock)
        self.rng = random.Random(config.seed)
        self.messages: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}  # id → {"message", "key" (its key_id)}
        self.lock = threading.Lock()
        self._say_lock = threading.Lock()  # printing may block; never while holding `lock`
        self.out = out
        self.record = open(config.record, "a", encoding="utf-8") if config.record else None  # noqa: SIM115
        self.counter = 0
        self.webhooks = None
        if config.webhook_url and config.webhook_secret:
            from cloudchat_cli.sandbox.webhooks import WebhookSender

            self.webhooks = WebhookSender(
                config.webhook_url, config.webhook_secret, status_delay=config.status_delay,
                new_id=self.next_id, log=self.log)

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self.lock:
            return self.rng.random() < rate

    def next_id(self, prefix: str) -> str:
        with self.lock:
            self.counter += 1
            return f"{prefix}_{self.counter:06d}{self.rng.getrandbits(40):010x}"

    def write_record(self, entry: dict[str, Any]) -> None:
        if self.record is None:
            return
        line = dumps(entry)
        with self.lock:
            self.record.write(line + "\n")
            self.record.flush()

    def say(self, line: str) -> None:
        if self.out is None or self.config.quiet:
            return
        with self._say_lock:
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def log(self, line: str) -> None:
        """Diagnostics (webhook attempts) go to stderr, so stdout stays one line per message."""
        if self.config.quiet:
            return
        with self._say_lock:
            try:
                sys.stderr.write(f"{_now()}  {line}\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        if self.webhooks is not None:
            self.webhooks.close()
        if self.record is not None:
            with self.lock:
                self.record.close()
                self.record = None


def _error(status: int, kind: str, message: str, param: str | None = None) -> dict:
    error: dict[str, Any] = {"code": status, "type": kind, "message": message}
    if param:
        error["param"] = param
    return {"error": error}


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None,
                   close: bool = False) -> Response:
    body = dumps(payload, separators=(", ", ": ")).encode()
    return Response(status, body, dict(headers or {}), close)


class _Routes:
    """Path → {method: handler}; a known path with another method is a 405 with ``Allow``."""

    def __init__(self, app: SandboxApp):
        self.exact = {
            API_PREFIX + "/messages": {"POST": app.post_message},
            "/_sandbox/messages": {"GET": app.list_messages, "HEAD": app.list_messages},
            "/_sandbox/inbound": {"POST": app.inbound},
        }
        self.message = {"GET": app.get_message, "HEAD": app.get_message}

    def find(self, path: str) -> dict[str, Callable[[Request], Response | None]] | None:
        if path in self.exact:
            return self.exact[path]
        prefix = API_PREFIX + "/messages/"
        if path.startswith(prefix) and "/" not in path[len(prefix):] and path != prefix:
            return self.message
        return None


class SandboxApp(App):
    """The sandbox's routes: the contract of POST /messages, plus the _sandbox helpers."""

    def __init__(self, state: SandboxState):
        self.state = state
        self.routes = _Routes(self)

    # --- plumbing --------------------------------------------------------------------------

    def _finish(self, request: Request, status: int, payload: Any, body: Any = None,
                **extra: Any) -> Response:
        """Record the decision (before anything can fail), apply --latency, then answer."""
        headers = extra.pop("headers", None)
        close = extra.pop("close", False)
        self.state.write_record({
            "ts": round(time.time(), 6), "method": request.method, "path": request.target,
            "status": status, "request": None if isinstance(body, InvalidJSON) else body,
            "conn": request.conn, **extra})
        if self.state.config.latency > 0:
            time.sleep(self.state.config.latency)
        return _json_response(status, payload, headers, close)

    def _not_allowed(self, request: Request, allowed: dict, body: Any = None) -> Response:
        allow = ", ".join(allowed)
        return self._finish(
            request, 405,
            _error(405, "method_not_allowed", f"{request.method} is not allowed on "
                   f"{request.path}; use {allow}"),
            body, headers={"Allow": allow})

    def _route(self, request: Request) -> Callable[[Request], Response | None] | Response:
        """The handler for this request, or the 404/405 answer (read before the body)."""
        methods = self.routes.find(request.path)
        if methods is None:
            if request.path.startswith(API_PREFIX + "/"):
                # Like the real API: an unknown key is refused before the route is looked up.
                key = self._authorize(request, None, write=False)
                if isinstance(key, Response):
                    return key
            return self._finish(request, 404, _error(404, "not_found",
                                                     f"no such resource: {request.path}"))
        handler = methods.get(request.method)
        if handler is None:
            return self._not_allowed(request, methods)
        return handler

    def _authorize(self, request: Request, body: Any, write: bool) -> str | Response:
        """The caller's key, or the 401/403 answer."""
        key = _bearer(request.headers.get("authorization"))
        if key is None:
            return self._finish(
                request, 401, _error(401, "unauthorized", "missing or malformed Bearer API key"),
                body)
        config = self.state.config
        allowed = key in config.keys if config.keys else key.startswith("sk_test_")
        if not allowed:
            return self._finish(request, 401, _error(401, "unauthorized", "invalid API key"),
                                body, key=key_id(key))
        if write and key.startswith(READ_ONLY_PREFIX):
            return self._finish(
                request, 403, _error(403, "forbidden", "this key lacks the messages:write scope"),
                body, key=key_id(key))
        return key

    # --- the HTTP layer's callbacks --------------------------------------------------------

    def before_body(self, request: Request) -> Response | None:
        handler = self._route(request)
        if isinstance(handler, Response):
            return handler
        if handler == self.post_message:
            key = self._authorize(request, None, write=True)
            if isinstance(key, Response):
                return key
        return None

    def handle(self, request: Request) -> Response | None:
        handler = self._route(request)
        if isinstance(handler, Response):
            return handler
        return handler(request)

    def framing_error(self, error: FramingError, request: Request | None, conn: int) -> Response:
        self.state.write_record({
            "ts": round(time.time(), 6), "method": request.method if request else None,
            "path": request.target if request else None, "status": error.status,
            "request": None, "conn": conn, "error": error.kind})
        return _json_response(error.status, _error(error.status, error.kind, error.message),
                              close=True)

    def internal_error(self, error: Exception, request: Request) -> Response:
        self.state.log(f"sandbox error: {type(error).__name__}: {error} "
                       f"({request.method} {request.path})")
        # Not recorded: writing the record may be what failed.
        return _json_response(500, _error(500, "server_error", "internal sandbox error"),
                              close=True)

    # --- routes ----------------------------------------------------------------------------

    def list_messages(self, request: Request) -> Response:
        with self.state.lock:
            messages = list(self.state.messages)
        return _json_response(200, {"messages": messages, "count": len(messages)})

    def inbound(self, request: Request) -> Response:
        """Make the sandbox emit a ``message.received`` (as if a customer wrote in)."""
        body = parse_json(request.body)
        if self.state.webhooks is None:
            return _json_response(409, _error(409, "no_webhook", "start the sandbox with "
                                              "--webhook-url and a webhook secret"))
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return _json_response(400, _error(400, "invalid_request", "body must be a JSON "
                                              "object with text (and from, channel, pushName)",
                                              "text"))
        channel = body.get("channel") if body.get("channel") in CHANNELS else "whatsapp"
        sender = body.get("from")
        event_id = self.state.webhooks.inbound(
            channel, sender if isinstance(sender, str) and sender else "6281234567890",
            body["text"], body.get("pushName") if isinstance(body.get("pushName"), str) else None)
        return _json_response(202, {"id": event_id, "event": "message.received"})

    def get_message(self, request: Request) -> Response:
        """``GET /messages/{id}``: the message if this key sent it, else a JSON 404."""
        key = self._authorize(request, None, write=False)
        if isinstance(key, Response):
            return key
        decision = self.state.limiter.admit(key)
        if not decision.allowed:
            return self._rate_limited(request, key, decision, None)
        message_id = request.path.rsplit("/", 1)[1]
        with self.state.lock:
            found = self.state.by_id.get(message_id)
        if found is None or found["key"] != key_id(key):
            return self._finish(request, 404, _error(404, "not_found",
                                                     f"no message with id {message_id}"),
                                headers=decision.headers(), key=key_id(key))
        return self._finish(request, 200, found["message"], headers=decision.headers(),
                            key=key_id(key), id=message_id)

    def _rate_limited(self, request: Request, key: str, decision: Any, body: Any) -> Response:
        message = (f"rate limit exceeded: {decision.limit} requests per "
                   f"{self.state.config.rate_window:g} s; retry in {decision.reset:.1f} s")
        self.state.say(f"{_now()}  429 rate limited (key …{key_id(key)[-4:]})")
        return self._finish(request, 429, _error(429, "rate_limited", message), body,
                            headers=decision.headers(), key=key_id(key))

    def post_message(self, request: Request) -> Response | None:
        state = self.state
        body = parse_json(request.body)
        key = self._authorize(request, body, write=True)
        if isinstance(key, Response):
            return key
        decision = state.limiter.admit(key)
        if not decision.allowed:
            return self._rate_limited(request, key, decision, body)
        if state.chance(state.config.drop_rate):
            # Read the request, then hang up without answering: "outcome unknown" for clients.
            state.write_record(
                {"ts": round(time.time(), 6), "method": request.method, "path": request.target,
                 "status": None, "request": None if isinstance(body, InvalidJSON) else body,
                 "conn": request.conn, "dropped": True, "key": key_id(key)})
            return None
        if state.chance(state.config.fail_rate):
            return self._finish(
                request, 500, _error(500, "server_error", "injected failure (--fail-rate)"),
                body, headers=decision.headers(), key=key_id(key))
        if isinstance(body, InvalidJSON):
            return self._finish(
                request, 400, _error(400, "invalid_request", body.reason, "body"), None,
                headers=decision.headers(), key=key_id(key))
        problem = check_message(body)
        if problem:
            param, message, kind = problem
            return self._finish(request, 400, _error(400, kind, message, param), body,
                                headers=decision.headers(), key=key_id(key))
        return self._accept(request, body, key, decision.headers())

    def _accept(self, request: Request, body: dict, key: str,
                headers: dict[str, str]) -> Response:
        state = self.state
        message = {
            "id": state.next_id("msg"),
            "status": "queued",
            "channel": body["channel"],
            "to": body["to"],
            "type": body.get("type", "text"),
            "created_at": int(time.time()),
        }
        with state.lock:
            state.messages.append({**message, "request": body})
            state.by_id[message["id"]] = {"message": message, "key": key_id(key)}
        summary = body.get("text") or (body.get("media") or {}).get("url", "")
        state.say(
            f"{_now()}  {message['channel']:<9} → {message['to']:<16} {message['type']:<8} "
            f"{_preview(summary)}  [{message['id']}]"
        )
        answer = self._finish(request, 201, message, body, headers=headers, key=key_id(key),
                              id=message["id"])
        if state.webhooks is not None:
            state.webhooks.message_accepted(message)
        return answer


_BEARER = re.compile(r"bearer +([^\s]+) *", re.IGNORECASE)


def _bearer(header: str | None) -> str | None:
    """The token of a ``Bearer`` credential; the scheme is case-insensitive (RFC 7235)."""
    match = _BEARER.fullmatch(header or "")
    return match.group(1) if match else None


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _preview(text: str, limit: int = 60) -> str:
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


class SandboxServer:
    """Start/stop wrapper: in the foreground for ``cloudchat sandbox``, or on a thread."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.state = SandboxState(config, out, clock)
        self.httpd = ThreadedServer((config.host, config.port), SandboxApp(self.state))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{API_PREFIX}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.05)  # how soon stop() takes effect

    def start_background(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="sandbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()
        self.state.close()
