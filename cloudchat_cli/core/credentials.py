"""Find, store and delete the API key and the webhook secret.

Order (docs/architecture.md, "Credentials"): key file (flag or env) → env var → OS keyring of
the profile → the 0600 credentials file written only by ``--insecure-storage``. A keyring
counts only when it is real; a locked or absent one is skipped after a short timeout and never
prompted for without a TTY.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudchat_cli.core import environment, paths
from cloudchat_cli.core.errors import CredentialsError
from cloudchat_cli.core.files import read_limited

SERVICE = "cloudchat-cli"
KEYRING_TIMEOUT = 5.0
MAX_SECRET_FILE = 64 * 1024  # a key is ~50 bytes; a larger "key file" is the wrong file
_SECRET_CHARS = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class Kind:
    """What is being looked for: the API key or the webhook secret."""

    name: str  # entry name in keyring and credentials file
    label: str
    env: str
    file_env: str
    file_flag: str
    set_command: str
    # One secret per line (several lines during a rotation); any other character, spaces and
    # commas included, is part of the secret: HMAC keys are arbitrary strings.
    multi: bool = False


API_KEY = Kind(
    "api_key",
    "API key",
    "CLOUDCHAT_API_KEY",
    "CLOUDCHAT_API_KEY_FILE",
    "--api-key-file",
    "cloudchat config set-key",
)
WEBHOOK_SECRET = Kind(
    "webhook_secret",
    "webhook secret",
    "CLOUDCHAT_WEBHOOK_SECRET",
    "CLOUDCHAT_WEBHOOK_SECRET_FILE",
    "--secret-file",
    "cloudchat config set-webhook-secret",
    multi=True,
)


def mask(secret: str) -> str:
    """Show a secret as ``sk_live_…wxyz``: its well-known prefix and its last 4 characters.

    A short secret never shows half of itself: with 8 or fewer characters after the prefix, the
    tail shown is fewer than half of them (``sk_test_abcdefgh`` → ``sk_test_…fgh``).
    """
    match = re.match(r"^([a-z]{2,8}_(?:(?:live|test|ro)_)?)", secret)
    prefix = match.group(1) if match else ""
    rest = secret[len(prefix) :]
    shown = min(4, (len(rest) - 1) // 2)
    tail = rest[-shown:] if shown > 0 else ""
    return f"{prefix}…{tail}"


@dataclass
class Secret:
    """A secret and where it was found; ``repr`` never shows the value."""

    value: str = field(repr=False)
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def masked(self) -> str:
        return mask(self.value)


@dataclass
class Attempt:
    source: str
    outcome: str


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def check_secret_value(value: str, kind: Kind, where: str) -> str:
    """Strip surrounding whitespace and refuse values that could break an HTTP header.

    A rotating kind (the webhook secret) is one secret per line, each kept exactly as written
    (spaces, commas, ``=``, non-ASCII); blank lines are ignored. Returns the lines joined by
    ``\n``."""
    if kind.multi:
        lines = [line for line in _LINE_BREAK.split(value) if line.strip()]
        if not lines:
            raise CredentialsError(f"{kind.label} from {where} is empty")
        if not all(line.isprintable() for line in lines):
            raise CredentialsError(
                f"{kind.label} from {where} contains control characters",
                hint="one secret per line; a second line is a second secret (a rotation)",
            )
        return "\n".join(lines)
    value = value.strip()
    if not value:
        raise CredentialsError(f"{kind.label} from {where} is empty")
    parts = [value]
    if not all(_SECRET_CHARS.match(part) for part in parts):
        raise CredentialsError(
            f"{kind.label} from {where} contains spaces or control characters",
            hint="a key is one line of printable characters",
        )
    return value


def read_secret_file(path: Path, kind: Kind) -> Secret:
    """Read a key from a file (systemd credentials, Docker secrets); warn if others can read it."""
    raw = read_limited(path, MAX_SECRET_FILE, f"{kind.label} file", CredentialsError)
    try:
        text = raw.decode("utf-8")
        st = path.stat()
    except UnicodeDecodeError:
        raise CredentialsError(f"{kind.label} file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise CredentialsError(f"cannot read {kind.label} file {path}: {exc.strerror}") from None
    secret = Secret(check_secret_value(text, kind, f"file {path}"), f"file {path}")
    if st.st_mode & 0o077:
        secret.warnings.append(
            f"{kind.label} file {path} is readable by other users; run `chmod 600 {path}`"
        )
    return secret


# --- the keyring -----------------------------------------------------------------------------


def _keyring_disabled(env: Mapping[str, str]) -> str | None:
    if env.get("CLOUDCHAT_NO_KEYRING", "") not in ("", "0"):
        return "disabled by CLOUDCHAT_NO_KEYRING"
    return None


def keyring_backend(env: Mapping[str, str] | None = None) -> tuple[Any | None, str]:
    """Return (backend, description) when a real keyring is available, else (None, why not)."""
    env = environment.current().env if env is None else env
    disabled = _keyring_disabled(env)
    if disabled:
        return None, disabled
    try:
        import keyring
        from keyring.backends import chainer, fail
    except Exception as exc:  # a broken keyring install must not stop a send
        return None, f"keyring library unavailable: {exc}"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:
        return None, f"keyring backend failed to load: {exc}"
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring):
        return None, "no keyring backend available (no Secret Service / D-Bus session?)"
    if "null" in type(backend).__module__.split(".")[-1].lower():
        return None, f"keyring backend {name} stores nothing"
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None, "keyring chainer has no usable backends"
    if type(backend).__module__.startswith("keyrings.alt") and "file" in name.lower():
        return None, f"keyring backend {name} is a file store, not an OS keyring"
    return backend, name


def _with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """Run a keyring call in a daemon thread, so a locked or hung keyring cannot hang us."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # reported to the caller
            result["error"] = exc

    thread = threading.Thread(target=run, name="keyring", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"keyring did not answer within {timeout:g} s (locked?)")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _keyring_timeout(env: Mapping[str, str]) -> float:
    try:
        return float(env.get("CLOUDCHAT_KEYRING_TIMEOUT", KEYRING_TIMEOUT))
    except ValueError:
        return KEYRING_TIMEOUT


def _entry(kind: Kind, profile: str) -> str:
    return f"{profile}:{kind.name}"


def keyring_get(kind: Kind, profile: str, env: Mapping[str, str]) -> tuple[str | None, str]:
    backend, desc = keyring_backend(env)
    if backend is None:
        return None, desc
    try:
        value = _with_timeout(
            lambda: backend.get_password(SERVICE, _entry(kind, profile)), _keyring_timeout(env)
        )
    except Exception as exc:
        return None, f"{desc}: {type(exc).__name__}: {exc}"
    return value, desc


# --- the insecure credentials file -----------------------------------------------------------


def _read_credentials_file(path: Path) -> dict[str, Any]:
    import tomllib  # only --insecure-storage users have this file

    raw = read_limited(path, MAX_SECRET_FILE, "credentials file", CredentialsError,
                       missing_ok=True)
    if raw is None:
        return {}
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CredentialsError(f"credentials file {path} is unreadable: {exc}") from None


def _write_credentials_file(path: Path, data: dict[str, Any]) -> None:
    from cloudchat_cli.core.settings import _toml_value

    lines = ["# Secrets stored with --insecure-storage. Keep this file 0600.", ""]
    for profile, table in data.items():
        if table:
            lines.append(f"[{profile}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
            lines.append("")
    try:
        paths.atomic_write(path, "\n".join(lines), mode=0o600)
    except OSError as exc:  # a read-only directory, a full disk
        raise CredentialsError(f"cannot write credentials file {path}: {exc.strerror or exc}"
                               ) from None


# --- resolution ------------------------------------------------------------------------------


def find_secret(
    kind: Kind,
    profile: str,
    *,
    file_flag: str | Path | list | None = None,
    env: Mapping[str, str] | None = None,
    credentials_path: Path | None = None,
) -> tuple[Secret | None, list[Attempt]]:
    """Look through every source in order; return the first secret found and what was tried."""
    env = environment.current().env if env is None else env
    attempts: list[Attempt] = []
    files = [str(f) for f in file_flag] if isinstance(file_flag, list | tuple) else (
        [str(file_flag)] if file_flag else [])
    option = kind.file_flag
    if not files and env.get(kind.file_env):
        files, option = [env[kind.file_env]], kind.file_env
    if files:
        if len(files) > 1 and not kind.multi:
            raise CredentialsError(f"{kind.file_flag} may be given once")
        read = [read_secret_file(Path(f).expanduser(), kind) for f in files]
        secret = Secret("\n".join(s.value for s in read),
                        f"{option} {', '.join(files)}",
                        [w for s in read for w in s.warnings])
        return secret, attempts
    attempts.append(Attempt(f"{kind.file_flag} / {kind.file_env}", "not set"))
    if env.get(kind.env, "").strip():
        value = check_secret_value(env[kind.env], kind, kind.env)
        return Secret(value, f"env {kind.env}"), attempts
    attempts.append(Attempt(kind.env, "not set"))
    value, desc = keyring_get(kind, profile, env)
    if value:
        value = check_secret_value(value, kind, "the keyring")
        return Secret(value, f"keyring ({desc}, profile {profile})"), attempts
    attempts.append(
        Attempt(
            "OS keyring", f"no entry for profile {profile!r} in {desc}" if "." in desc else desc
        )
    )
    cpath = credentials_path or paths.credentials_file(env)
    stored = _read_credentials_file(cpath).get(profile, {}).get(kind.name)
    if isinstance(stored, str) and stored.strip():
        value = check_secret_value(stored, kind, f"credentials file {cpath}")
        return Secret(value, f"credentials file {cpath}"), attempts
    attempts.append(Attempt(f"credentials file {cpath}", "no entry for this profile"))
    return None, attempts


def resolve_secret(kind: Kind, profile: str, **kwargs: Any) -> Secret:
    """Return the secret or raise ``CredentialsError`` listing every source tried and the fixes."""
    secret, attempts = find_secret(kind, profile, **kwargs)
    if secret is not None:
        return secret
    tried = "; ".join(f"{a.source}: {a.outcome}" for a in attempts)
    raise CredentialsError(
        f"no {kind.label} found for profile {profile!r} (tried {tried})",
        hint=(
            f"set {kind.env}, pass {kind.file_flag} PATH (or {kind.file_env}) — what cron jobs "
            f"should use — or store it with `{kind.set_command}`"
        ),
    )


def require_keyring(kind: Kind, env: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """The keyring a secret would be stored in; without a usable one, say so — before anyone
    is asked to paste a secret — and name every other place a secret can live."""
    backend, desc = keyring_backend(environment.current().env if env is None else env)
    if backend is None:
        raise CredentialsError(
            f"cannot store the {kind.label} here: no usable OS keyring ({desc})",
            hint=(
                f"choose one: `{kind.set_command} --insecure-storage` (a 0600 file next to the "
                f"config); a 0600 file of your own passed as {kind.file_flag} PATH or "
                f"{kind.file_env}=PATH (systemd credentials, Docker secrets); or the "
                f"environment variable {kind.env}"
            ),
        )
    return backend, desc


def store_secret(
    kind: Kind,
    profile: str,
    value: str,
    *,
    insecure_storage: bool = False,
    env: Mapping[str, str] | None = None,
    credentials_path: Path | None = None,
) -> str:
    """Store a secret in the keyring (or, when asked, the 0600 file); return where it went."""
    env = environment.current().env if env is None else env
    value = check_secret_value(value, kind, "input")
    if insecure_storage:
        cpath = credentials_path or paths.credentials_file(env)
        data = _read_credentials_file(cpath)
        data.setdefault(profile, {})[kind.name] = value
        _write_credentials_file(cpath, data)
        return f"credentials file {cpath} (0600)"
    backend, desc = require_keyring(kind, env)
    try:
        _with_timeout(
            lambda: backend.set_password(SERVICE, _entry(kind, profile), value),
            _keyring_timeout(env),
        )
    except Exception as exc:
        raise CredentialsError(
            f"the keyring refused to store the {kind.label}: {type(exc).__name__}: {exc}",
            hint=f"or store it unencrypted with `{kind.set_command} --insecure-storage`",
        ) from None
    return f"keyring ({desc})"


def delete_secret(
    kind: Kind,
    profile: str,
    *,
    env: Mapping[str, str] | None = None,
    credentials_path: Path | None = None,
) -> list[str]:
    """Delete the secret from the keyring and the credentials file; return where it was."""
    env = environment.current().env if env is None else env
    removed: list[str] = []
    backend, desc = keyring_backend(env)
    if backend is not None:
        try:
            _with_timeout(
                lambda: backend.delete_password(SERVICE, _entry(kind, profile)),
                _keyring_timeout(env),
            )
            removed.append(f"keyring ({desc})")
        except Exception:
            pass  # PasswordDeleteError: nothing stored there
    cpath = credentials_path or paths.credentials_file(env)
    data = _read_credentials_file(cpath)
    if data.get(profile, {}).pop(kind.name, None) is not None:
        _write_credentials_file(cpath, data)
        removed.append(f"credentials file {cpath}")
    return removed
