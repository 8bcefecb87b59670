"""``config doctor`` and ``config show``: what the CLI would use, where it comes from, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudchat_cli.core import credentials, paths
from cloudchat_cli.core.errors import CloudChatError

if TYPE_CHECKING:
    from cloudchat_cli.services.session import Session


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


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


def run_checks(session: Session, *, probe: bool = True) -> list[Check]:
    """Look at config, keyring, credentials and the server; never raise for what it finds."""
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
    backend, desc = credentials.keyring_backend(session.env)
    checks.append(Check("keyring", backend is not None, desc if backend else f"none: {desc}"))
    try:
        key = session.api_key()
        checks.append(Check("api key", True, f"{key.masked} from {key.source}"))
    except CloudChatError as exc:
        checks.append(Check("api key", False, exc.message + (f" — {exc.hint}" if exc.hint else "")))
    if probe:
        checks.append(_probe(cfg.base_url, min(cfg.timeout, 10.0)))
        from cloudchat_cli.services.ratestore import check_rate_store

        checks.append(check_rate_store(session))
    return checks


def _probe(base_url: str, timeout: float) -> Check:
    """Does anything answer HTTP at ``base_url``? Any status counts; no key is sent."""
    import httpx

    try:
        response = httpx.get(base_url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return Check("base_url", False, f"{base_url} does not answer: {exc or type(exc).__name__}")
    return Check("base_url", True, f"{base_url} answers (HTTP {response.status_code})")
