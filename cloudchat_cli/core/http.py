"""The HTTP core: one client for every command — auth, throttle, retries, errors, debug log."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from cloudchat_cli import __version__
from cloudchat_cli.core.backoff import RETRYABLE_STATUSES, RetryPolicy, retry_delay
from cloudchat_cli.core.deadline import NO_KEEPALIVE, exchange
from cloudchat_cli.core.errorbody import one_line, parse_error_body
from cloudchat_cli.core.errors import ApiError, ConfigError, NetworkError
from cloudchat_cli.core.throttle import Throttle
from cloudchat_cli.core.wire import StdlibTransport

USER_AGENT = f"cloudchat-cli/{__version__}"
MAX_BODY = 1024 * 1024  # what we read of any response; the rest is discarded
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
TRANSPORT_VAR = "CLOUDCHAT_TRANSPORT"  # wire (the default) or httpx: see choose_transport
TRANSPORTS = ("wire", "httpx")
SECRET_HEADERS = {"authorization", "x-cloudchat-signature", "cookie", "set-cookie"}

Notify = Callable[[str, dict[str, Any]], None]


@dataclass
class Response:
    """A response read in full (up to ``MAX_BODY``)."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float
    truncated: bool = False
    attempts: int = 1
    _json: Any = field(default=None, repr=False)

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        if self._json is None and self.body:
            try:
                self._json = json.loads(self.body)
            except ValueError:
                self._json = None
        return self._json


def redact_headers(headers: Any) -> dict[str, str]:
    return {
        k: ("[redacted]" if k.lower() in SECRET_HEADERS else v) for k, v in dict(headers).items()
    }


class ApiClient:
    """Send requests to the CloudChat API through the throttle, retrying what is safe to retry."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        throttle: Throttle | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        debug: Callable[[str], None] | None = None,
        notify: Notify | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        if transport is None:
            name, transport = choose_transport()
            if debug:
                debug(f"transport: {name}")
        self.retry = retry or RetryPolicy()
        self.throttle = throttle
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.debug = debug
        self.notify = notify or (lambda event, data: None)
        self._consecutive_429 = 0
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            # httpx's own transport (behind a proxy) is held to the deadline by watching each
            # new connection (core/deadline.py): a kept-alive one could not be watched.
            **({"limits": NO_KEEPALIVE} if transport is None else {}),
            # For httpx's own transport (behind a proxy): its CA bundle costs ~40 ms to load,
            # which a plain-HTTP base URL (the sandbox) never needs. https:// always verifies.
            verify=self.base_url.startswith("https://"),
            follow_redirects=False,
            # A 3xx is refused before httpx reads its Location (a malformed one would
            # otherwise surface as a protocol error, "outcome unknown").
            event_hooks={"response": [self._refuse_redirect]},
        )
        self.timeout = timeout

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        wait: bool = True,
        on_send: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send a request; return the 2xx response or raise ``ApiError``/``NetworkError``.

        A 3xx is an error naming its ``Location``: it is never followed (the API key would
        travel to wherever it points).

        ``on_send`` runs once a rate-limit slot is held, right before each attempt goes out
        (the broadcast journal marks the row ``sending`` there, not while it waits).
        """
        waited = 0.0
        retries = 0
        while True:
            response = self._attempt(method, path, json_body, content, params, wait, on_send,
                                     headers)
            response.attempts = retries + 1
            if 200 <= response.status < 300:
                self._consecutive_429 = 0
                return response
            if response.status < 400:  # not reached through httpx.Client: kept as a guard
                raise self._redirect(response.status, response.headers.get("location", ""))
            error = self._error(response)
            if response.status not in RETRYABLE_STATUSES or retries >= self.retry.max_retries:
                raise error
            delay = retry_delay(
                self.retry, retries, response.status, response.headers, self.clock(), self.rng
            )
            if waited + delay > self.retry.max_total_wait:
                error.hint = self._gave_up(response.status, delay)
                raise error
            waited += delay
            retries += 1
            if response.status == 429 and self.throttle is not None:
                # Block the key first: once the notice is out, every process honours the wait.
                self.throttle.block(delay)
            self.notify(
                "retry",
                {"status": response.status, "delay": delay, "retry": retries,
                 "max_retries": self.retry.max_retries},
            )
            if response.status == 429:
                self._on_429(delay)
            else:
                self.sleep(delay)

    def _gave_up(self, status: int, delay: float) -> str:
        budget = f"max_retry_wait ({self.retry.max_total_wait:g} s)"
        if status != 429:
            return f"gave up: the next wait ({delay:.0f} s) would pass {budget}"
        when = _utc(self.clock() + delay)
        asked = f"{delay:.0f}" if delay < 1e9 else f"{delay:.3g}"
        return f"the server asks to wait {asked} s, more than {budget}: retry after {when}"

    def _on_429(self, delay: float) -> None:
        """After a 429 (the key is already blocked for everyone): if 429s persist, fall back
        to even pacing; the wait itself is the next slot's."""
        self._consecutive_429 += 1
        if self.throttle is None:
            self.sleep(delay)
            return
        if self._consecutive_429 >= 2 and not self.throttle.pace:
            self.throttle.even_pacing()
            self.notify("pacing", {"interval": self.throttle.pace})

    def _attempt(
        self,
        method: str,
        path: str,
        json_body: Any,
        content: bytes | None,
        params: dict[str, str] | None,
        wait: bool,
        on_send: Callable[[], None] | None,
        extra_headers: dict[str, str] | None = None,
    ) -> Response:
        slot = (
            self.throttle.acquire(wait=wait, on_wait=self._on_wait, on_done=self._on_wait_done)
            if self.throttle
            else None
        )
        url = self.url(path)
        try:
            if on_send is not None:
                on_send()
            headers = {"Content-Type": "application/json"} if content is not None else {}
            headers.update(extra_headers or {})  # `cloudchat api -H` (never Authorization)
            request = self._http.build_request(
                method, path.lstrip("/"), json=json_body, content=content, params=params,
                headers=headers,
            )
            self._log_request(request)
            started = time.monotonic()
            response = self._send(request, started)
            self._log_response(response)
            return response
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise NetworkError(
                f"cannot connect to {url}: {_reason(exc)}",
                hint="check base_url (`cloudchat config show`) and your network",
            ) from None
        except httpx.TimeoutException:
            raise self._unknown(method, url, f"no response within {self.timeout:g} s") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise self._unknown(method, url, f"connection lost: {_reason(exc)}") from None
        except httpx.HTTPError as exc:
            raise NetworkError(f"request to {url} failed: {_reason(exc)}") from None
        finally:
            if slot is not None:
                self.throttle.release(slot)

    def _send(self, request: httpx.Request, started: float) -> Response:
        done = exchange(self._http, request, self.timeout, MAX_BODY)
        return Response(done.status, done.headers, done.body, time.monotonic() - started,
                        done.truncated)

    def _unknown(self, method: str, url: str, why: str) -> NetworkError:
        if method.upper() in ("GET", "HEAD", "OPTIONS"):
            return NetworkError(f"{method} {url}: {why}")
        return NetworkError(
            f"{method} {url}: {why} — outcome unknown, the message may have been sent",
            outcome_unknown=True,
            hint="check before resending, or the recipient may get it twice",
        )

    def _refuse_redirect(self, raw: httpx.Response) -> None:
        if 300 <= raw.status_code < 400:
            raise self._redirect(raw.status_code, raw.headers.get("location", ""))

    def _redirect(self, status: int, location: str) -> ApiError:
        location = one_line(location, 200) or "no Location"
        return ApiError(
            status,
            f"the API answered with a redirect to {location}; it was not followed (the API key "
            "would go with it)",
            type="redirect",
            location=location,
            hint=f"fix base_url (now {one_line(self.base_url, 200)}): "
            "`cloudchat config set base_url URL` with the address the server points to",
        )

    def _error(self, response: Response) -> ApiError:
        parsed = parse_error_body(
            response.status, response.body, response.headers.get("content-type")
        )
        hint = None
        if response.status in (401, 403):
            hint = "check the API key (`cloudchat config doctor` shows which one is used)"
        elif response.status == 429:
            hint = "the App's rate limit is still exceeded after retrying; try again later"
        error = ApiError(
            response.status,
            parsed.message,
            code=parsed.code,
            type=parsed.type,
            param=parsed.param,
            hint=hint,
        )
        error.response = response  # `cloudchat api` prints the error body as it came
        return error

    def _on_wait(self, seconds: float) -> None:
        self.notify("throttle_wait", {"seconds": seconds})

    def _on_wait_done(self) -> None:
        self.notify("throttle_done", {})

    def _log_request(self, request: httpx.Request) -> None:
        if not self.debug:
            return
        self.debug(f"→ {request.method} {request.url}")
        for key, value in redact_headers(request.headers).items():
            self.debug(f"→ {key}: {value}")
        if request.content:
            self.debug(f"→ {one_line(request.content.decode('utf-8', 'replace'), 2000)}")

    def _log_response(self, response: Response) -> None:
        if not self.debug:
            return
        self.debug(f"← {response.status} in {response.elapsed * 1000:.0f} ms")
        for key, value in redact_headers(response.headers).items():
            self.debug(f"← {key}: {value}")
        if response.body:
            self.debug(f"← {one_line(response.body.decode('utf-8', 'replace'), 2000)}")


def choose_transport(env: Any = None) -> tuple[str, httpx.BaseTransport | None]:
    """The transport under the API client, and how ``--debug`` names it (None: httpx's own).

    ``wire`` (the default) is http.client underneath (core/wire.py: it starts faster than
    httpcore, see bench/HISTORY.md), unless a proxy is configured: httpx applies HTTP(S)_PROXY,
    ALL_PROXY and NO_PROXY only with its own. ``CLOUDCHAT_TRANSPORT=httpx`` always uses httpx's
    own: the escape hatch should ``wire`` ever misbehave somewhere (both pass the same contract
    tests)."""
    if env is None:  # the running invocation's variables (the process's outside the CLI)
        from cloudchat_cli.core import environment

        env = environment.current().env
    wanted = (env.get(TRANSPORT_VAR) or "").strip().lower() or "wire"
    if wanted not in TRANSPORTS:
        raise ConfigError(f"{TRANSPORT_VAR} must be one of {', '.join(TRANSPORTS)}, got "
                          f"{one_line(wanted, 40)!r}",
                          hint=f"unset {TRANSPORT_VAR} to use the default (wire)")
    if wanted == "httpx":
        return f"httpx's own ({TRANSPORT_VAR}=httpx)", None
    proxy = next((v for v in PROXY_VARS if env.get(v) or env.get(v.lower())), None)
    if proxy is not None:
        return f"httpx's own ({proxy} is set: proxies go through httpx)", None
    return "wire (http.client)", StdlibTransport(max_idle=8)


def _utc(epoch: float) -> str:
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "a time too far away to show"


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return one_line(text, 200)
