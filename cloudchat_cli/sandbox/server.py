"""The local CloudChat emulator: ``POST /api/public/v1/messages`` per API.md, over real HTTP.

Standard library only (``http.server``, a thread per connection), so it starts in milliseconds
inside ``cloudchat --sandbox`` and needs nothing the CLI does not already have.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from cloudchat_cli.sandbox.contract import CHANNELS, check_message
from cloudchat_cli.sandbox.ratelimit import RollingWindow

API_PREFIX = "/api/public/v1"
MAX_REQUEST_BODY = 1024 * 1024
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
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CloudChatSandbox/1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence http.server's stderr log
        pass

    @property
    def state(self) -> SandboxState:
        return self.server.state

    # --- plumbing --------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        if size < 0 or size > MAX_REQUEST_BODY:
            return None
        return self.rfile.read(size)

    def _finish(self, status: int, payload: Any, request: Any, **extra: Any) -> None:
        """Record the decision (before anything can fail), apply --latency, then answer."""
        headers = extra.pop("headers", None)
        self.state.write_record(
            {
                "ts": round(time.time(), 6),
                "method": self.command,
                "path": self.path,
                "status": status,
                "request": None if request is _INVALID_JSON else request,
                **extra,
            }
        )
        if self.state.config.latency > 0:
            time.sleep(self.state.config.latency)
        self._send_json(status, payload, headers)

    # --- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/_sandbox/messages":
            with self.state.lock:
                messages = list(self.state.messages)
            self._send_json(200, {"messages": messages, "count": len(messages)})
            return
        self._route_other()

    def do_POST(self) -> None:
        route = self.path.split("?", 1)[0]
        if route == API_PREFIX + "/messages":
            self._post_message()
            return
        if route == "/_sandbox/inbound":
            self._inbound()
            return
        self._route_other()

    def _inbound(self) -> None:
        """Make the sandbox emit a ``message.received`` (as if a customer wrote in)."""
        body = _json(self._read_body())
        if self.state.webhooks is None:
            self._send_json(409, _error(409, "no_webhook", "start the sandbox with "
                                        "--webhook-url and a webhook secret"))
            return
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            self._send_json(400, _error(400, "invalid_request", "body must be a JSON object "
                                        "with text (and from, channel, pushName)", "text"))
            return
        channel = body.get("channel") if body.get("channel") in CHANNELS else "whatsapp"
        event_id = self.state.webhooks.inbound(
            channel, str(body.get("from") or "6281234567890"), body["text"],
            body.get("pushName") if isinstance(body.get("pushName"), str) else None)
        self._send_json(202, {"id": event_id, "event": "message.received"})

    def do_PUT(self) -> None:
        self._route_other()

    do_DELETE = do_PATCH = do_PUT

    def _route_other(self) -> None:
        raw = self._read_body()
        if self.path.split("?", 1)[0] == API_PREFIX + "/messages":
            self._finish(405, _error(405, "method_not_allowed", "use POST"), None)
            return
        if self.path.startswith(API_PREFIX + "/") and not self._authorized():
            # Like the real API: an unknown key is refused before the route is looked up, so
            # `config doctor` can test a key with a request that cannot create anything.
            self._finish(401, _error(401, "unauthorized", "missing or invalid API key"),
                         _json(raw))
            return
        self._finish(404, _error(404, "not_found", f"no such resource: {self.path}"), _json(raw))

    def _authorized(self) -> bool:
        key = _bearer(self.headers.get("Authorization"))
        if key is None:
            return False
        keys = self.state.config.keys
        return key in keys if keys else key.startswith("sk_test_")

    def _post_message(self) -> None:
        state = self.state
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._finish(413, _error(413, "payload_too_large", "body too large"), None)
            return
        body = _json(raw)
        key = _bearer(self.headers.get("Authorization"))
        if key is None:
            self._finish(
                401, _error(401, "unauthorized", "missing or malformed Bearer API key"), body
            )
            return
        allowed = key in state.config.keys if state.config.keys else key.startswith("sk_test_")
        if not allowed:
            self._finish(401, _error(401, "unauthorized", "invalid API key"), body, key=key_id(key))
            return
        if key.startswith(READ_ONLY_PREFIX):
            self._finish(
                403,
                _error(403, "forbidden", "this key lacks the messages:write scope"),
                body,
                key=key_id(key),
            )
            return
        decision = state.limiter.admit(key)
        if not decision.allowed:
            message = (
                f"rate limit exceeded: {decision.limit} requests per "
                f"{state.config.rate_window:g} s; retry in {decision.reset:.1f} s"
            )
            state.say(f"{_now()}  429 rate limited (key …{key_id(key)[-4:]})")
            self._finish(
                429, _error(429, "rate_limited", message), body,
                headers=decision.headers(), key=key_id(key),
            )
            return
        if state.chance(state.config.drop_rate):
            # Read the request, then hang up without answering: "outcome unknown" for clients.
            state.write_record(
                {"ts": round(time.time(), 6), "method": self.command, "path": self.path,
                 "status": None, "request": body, "dropped": True, "key": key_id(key)}
            )
            self.close_connection = True
            return
        if state.chance(state.config.fail_rate):
            self._finish(
                500, _error(500, "server_error", "injected failure (--fail-rate)"), body,
                headers=decision.headers(), key=key_id(key),
            )
            return
        if body is _INVALID_JSON:
            self._finish(
                400, _error(400, "invalid_request", "body is not valid JSON", "body"), None,
                headers=decision.headers(), key=key_id(key),
            )
            return
        problem = check_message(body)
        if problem:
            param, message, kind = problem
            self._finish(
                400, _error(400, kind, message, param), body,
                headers=decision.headers(), key=key_id(key),
            )
            return
        self._accept(body, key, decision.headers())

    def _accept(self, body: dict, key: str, headers: dict[str, str]) -> None:
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
        summary = body.get("text") or (body.get("media") or {}).get("url", "")
        state.say(
            f"{_now()}  {message['channel']:<9} → {message['to']:<16} {message['type']:<8} "
            f"{_preview(summary)}  [{message['id']}]"
        )
        self._finish(201, message, body, headers=headers, key=key_id(key), id=message["id"])
        if state.webhooks is not None:
            state.webhooks.message_accepted(message)


_INVALID_JSON = object()


def _json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _INVALID_JSON


def _bearer(header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer ") :].strip()
    return token or None


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _preview(text: str, limit: int = 60) -> str:
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    state: SandboxState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal here (timeouts, kill -9); stay quiet.
        pass


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
        self.httpd = _Server((config.host, config.port), Handler)
        self.httpd.state = self.state
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
        self.httpd.serve_forever(poll_interval=0.2)

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
