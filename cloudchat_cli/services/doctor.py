"""``config doctor`` and ``config show``: what the CLI would use, where it comes from, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudchat_cli.core import credentials, paths
from cloudchat_cli.core.errors import ApiError, CloudChatError

if TYPE_CHECKING:
    from cloudchat_cli.core.http import ApiClient, Notify
    from cloudchat_cli.services.session import Session


PROBE_PATH = "messages/doctor-probe"  # a GET: it can never create a message


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # ok, but worth knowing (no keyring while the key comes from a file)

    @property
    def status(self) -> str:
        return "fail" if not self.ok else "warn" if self.warning else "ok"


def show_rows(session: Session) -> list[dict[str, Any]]:
    """Every setting with its value and source, plus the profile and the (masked) key."""
    cfg = session.settings()
    rows = [{"setting": "profile", "value": cfg.profile, "source": cfg.profile_source}]
    for item in cfg.items.values():
        rows.append(
            {"setting": item.name, "value": item.shown, "source": item.describe_source()}
        )
    try:
        key = session.api_key()
        rows.append({"setting": "api_key", "value": key.masked, "source": key.source})
    except CloudChatError as exc:
        rows.append({"setting": "api_key", "value": None, "source": f"not found: {exc.message}"})
    return rows


def run_checks(session: Session, *, probe: bool = True,
               notify: Notify | None = None) -> list[Check]:
    """Look at config, keyring, credentials and the server; never raise for what it finds.

    Exit-worthy failures are only what stops a send: no key, a rejected key, no server. A
    missing keyring is a warning when the key was found elsewhere (servers, cron, containers).
    """
    checks: list[Check] = []
    try:
        config = session.config
        state = "present" if config.exists else "not created yet (defaults apply)"
        checks.append(Check("config file", True, f"{config.path} — {state}"))
    except CloudChatError as exc:
        checks.append(Check("config file", False, exc.message))
        return checks
    checks.append(Check("state dir", True, str(paths.state_dir())))
    try:
        cfg = session.settings()
    except CloudChatError as exc:
        checks.append(Check("profile", False, exc.message))
        return checks
    checks.append(Check("profile", True, f"{cfg.profile} (from {cfg.profile_source})"))
    try:
        key: credentials.Secret | None = session.api_key()
        key_check = Check("api key", True, f"{key.masked} from {key.source}")
    except CloudChatError as exc:
        key = None
        key_check = Check("api key", False,
                          exc.message + (f" — {exc.hint}" if exc.hint else ""))
    backend, desc = credentials.keyring_backend(session.env)
    if backend is not None:
        checks.append(Check("keyring", True, desc))
    elif key is not None:
        checks.append(Check("keyring", True, f"none: {desc} — not needed, the key comes from "
                            f"{key.source}", warning=True))
    else:
        checks.append(Check("keyring", False, f"none: {desc}"))
    checks.append(key_check)
    if probe:
        checks.append(_transport(session))
        checks.append(_probe(session, cfg.base_url, key, notify))
        from cloudchat_cli.services.ratestore import check_rate_store

        checks.append(Check("rate store", *check_rate_store(session)))
    return checks


def _transport(session: Session) -> Check:
    """Which transport requests go through (``CLOUDCHAT_TRANSPORT``, a proxy)."""
    from cloudchat_cli.core.http import choose_transport

    try:
        name, transport = choose_transport(session.env)
    except CloudChatError as exc:
        return Check("transport", False, exc.message)
    if transport is not None:
        transport.close()
    return Check("transport", True, name)


def _probe(session: Session, base_url: str, key: credentials.Secret | None,
           notify: Notify | None) -> Check:
    """Test the key with an authenticated GET that cannot send anything: 401/403 means the key
    is refused, 404 or 2xx that it was accepted. One line, whatever happens."""
    if key is None:
        return Check("base_url", False, f"{base_url} not tested: no API key")
    from cloudchat_cli.core.errors import NetworkError, RateLimitWait

    probe = f"GET {PROBE_PATH}"
    try:
        client = _client(session, key, notify)
        try:  # never queue for a slot: with the window full (a broadcast running) that
            # could be the whole window; doctor answers now and says the key was not tested
            response = client.request("GET", PROBE_PATH, wait=False)
        finally:
            client.close()
    except RateLimitWait as exc:
        return Check("base_url", True, f"{base_url} not tested: the key's {exc.message}",
                     warning=True)
    except ApiError as exc:
        return _judge_error(base_url, key, probe, exc)
    except NetworkError as exc:
        return Check("base_url", False, f"{base_url} does not answer: {exc.message}")
    except CloudChatError as exc:
        return Check("base_url", False, f"{base_url} not tested: {exc.message}")
    return Check("base_url", True, f"{base_url} accepted the key {key.masked} "
                 f"({probe} → HTTP {response.status}; nothing sent)")


def _judge_error(base_url: str, key: credentials.Secret, probe: str, exc: ApiError) -> Check:
    status = exc.status
    if status in (401, 403):
        return Check("base_url", False, f"{base_url} refused the key {key.masked} "
                     f"(HTTP {status}: {exc.api_message}) — check it in App Settings")
    if 300 <= status < 400:  # the client never follows one (the key would go with it)
        return Check("base_url", False, f"{base_url} redirects {probe} to "
                     f"{exc.location or 'elsewhere'} (HTTP {status}) — is base_url right?")
    if status == 404:  # past authentication, the probe's path simply does not exist
        return Check("base_url", True, f"{base_url} accepted the key {key.masked} "
                     f"({probe} → HTTP 404, as expected; nothing sent)")
    if status == 429:
        return Check("base_url", True, f"{base_url} answers, but the key is rate-limited "
                     "right now: it was not tested", warning=True)
    if status >= 500:
        return Check("base_url", False, f"{base_url} answered HTTP {status}: {exc.api_message}")
    return Check("base_url", True, f"{base_url} answered {probe} with HTTP {status}: the key "
                 "could not be tested", warning=True)


def _client(session: Session, key: credentials.Secret, notify: Notify | None) -> ApiClient:
    """The ordinary client (the key's shared rate-limit window, redacted --debug log), but a
    probe is never retried: doctor answers now."""
    from cloudchat_cli.core.backoff import RetryPolicy
    from cloudchat_cli.core.http import ApiClient

    cfg = session.settings()
    return ApiClient(
        cfg.base_url, key.value, timeout=min(cfg.timeout, 10.0),
        retry=RetryPolicy(max_retries=0, max_total_wait=0),
        throttle=session.throttle(key.value),
        debug=session.debug_log if session.options.debug else None,
        notify=notify,
    )
