"""Settings: the config file, profiles, and the one function that resolves every value.

Precedence is flag > environment > profile > default, and every resolved value records where
it came from so ``cloudchat config show`` can tell the user (stripe-cli #512 is the reason).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudchat_cli.core import environment, paths, rate, redisurl
from cloudchat_cli.core.channels import CHANNELS, canonical_channel
from cloudchat_cli.core.errors import ConfigError
from cloudchat_cli.core.files import read_limited

DEFAULT_BASE_URL = "https://app.cloudchat.id/api/public/v1"
DEFAULT_PROFILE = "default"
PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _parse_base_url(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL string, got {value!r}")
    value = value.strip()
    if not re.match(r"^https?://[^\s/?#]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _parse_channel(value: str) -> str:
    channel = canonical_channel(value) if isinstance(value, str) else None
    if channel is None:
        raise ValueError(f"must be one of {', '.join(CHANNELS)}")
    return channel


def _parse_country_code(value: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be 1-4 digits, like 62, got {value!r}")
    value = str(value).strip().lstrip("+")
    if value and not re.fullmatch(r"[1-9][0-9]{0,3}", value):
        raise ValueError("must be 1-4 digits, like 62")
    return value


def _number(kind: type, minimum: float, *, strict: bool = False,
            maximum: float | None = None) -> Callable[[Any], Any]:
    what = "an integer" if kind is int else "a number"

    def parse(value: Any) -> Any:
        if isinstance(value, bool) or (
            kind is int and isinstance(value, float) and not value.is_integer()
        ):
            raise ValueError(f"must be {what}, got {value!r}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be {what}, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        if number < minimum or (strict and number == minimum):
            raise ValueError(f"must be {'>' if strict else '>='} {minimum:g}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum:g}")
        return number

    return parse


@dataclass(frozen=True)
class Spec:
    """One setting: its default, its environment variable, how to parse and check a value.

    What each one means is documented in the README's configuration table (not here: nothing
    showed a help text kept here, so it could only drift from the README's)."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    show: Callable[[Any], Any] | None = None  # how people see the value (masks a password)

    @property
    def env(self) -> str:
        return "CLOUDCHAT_" + self.name.upper()


# Upper bounds far past any sensible value, but within what a socket timeout, a sleep and the
# throttle's store can represent (timeout = 1e308 used to end in an OverflowError).
DAY = 86400.0
MAX_CONFIG = 1024 * 1024  # a config file is a few hundred bytes; this one is not ours

SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("base_url", DEFAULT_BASE_URL, _parse_base_url),
        Spec("default_channel", "whatsapp", _parse_channel),
        Spec("default_country_code", "", _parse_country_code),
        Spec("rate_limit", 60, _number(int, 1, maximum=1_000_000)),
        Spec("rate_window", 60.0, _number(float, 0, strict=True, maximum=DAY)),
        Spec("rate_margin", 0.25, _number(float, 0, maximum=DAY)),
        Spec("timeout", 30.0, _number(float, 0, strict=True, maximum=DAY)),
        Spec("broadcast_rate", "", rate.parse_rate_setting),
        Spec("max_retries", 4, _number(int, 0, maximum=1000)),
        Spec("max_retry_wait", 300.0, _number(float, 0, maximum=DAY)),
        Spec("rate_store", redisurl.LOCAL, redisurl.parse_store, show=redisurl.mask_url),
        Spec("webhook_dedupe_store", redisurl.LOCAL, redisurl.parse_store,
             show=redisurl.mask_url),
    )
}
STORE_SETTINGS = ("rate_store", "webhook_dedupe_store")


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from."""

    name: str
    value: Any
    source: str  # flag | env | profile | default | sandbox
    detail: str = ""

    @property
    def shown(self) -> Any:
        """The value as shown to people (``config show``/``get``): secrets masked."""
        spec = SPECS.get(self.name)
        return spec.show(self.value) if spec and spec.show else self.value

    def describe_source(self) -> str:
        return f"{self.source} ({self.detail})" if self.detail else self.source


@dataclass
class Settings:
    """Every setting of one profile, resolved."""

    profile: str
    profile_source: str
    items: dict[str, Resolved]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["items"][name].value
        except KeyError:
            raise AttributeError(name) from None

    def source(self, name: str) -> Resolved:
        return self.items[name]


# --- the config file -------------------------------------------------------------------------


@dataclass
class ConfigFile:
    """The parsed ``config.toml``: ``default_profile`` and ``[profiles.NAME]`` tables."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def profiles(self) -> list[str]:
        names = list(self.data.get("profiles", {}))
        return names if DEFAULT_PROFILE in names else [DEFAULT_PROFILE, *names]

    def has_profile(self, name: str) -> bool:
        return name == DEFAULT_PROFILE or name in self.data.get("profiles", {})

    def default_profile(self) -> str | None:
        return self.data.get("default_profile")

    def profile(self, name: str) -> dict[str, Any]:
        return dict(self.data.get("profiles", {}).get(name, {}))

    def set(self, profile: str, key: str, value: Any) -> None:
        self.data.setdefault("profiles", {}).setdefault(profile, {})[key] = value

    def unset(self, profile: str, key: str) -> bool:
        return self.data.get("profiles", {}).get(profile, {}).pop(key, None) is not None

    def ensure_profile(self, profile: str) -> None:
        self.data.setdefault("profiles", {}).setdefault(profile, {})

    def save(self) -> None:
        try:
            paths.atomic_write(self.path, dump_config(self.data), mode=0o600)
        except OSError as exc:  # a read-only directory, a full disk, a path through a file
            raise ConfigError(f"cannot write config file {self.path}: {exc.strerror or exc}",
                              hint="check the permissions of its directory, or point "
                              "CLOUDCHAT_CONFIG_DIR elsewhere") from None


def check_profile_name(name: str) -> str:
    if not PROFILE_RE.match(name or ""):
        raise ConfigError(
            f"invalid profile name {name!r}",
            hint="use letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return name


def load_config(path: Path | None = None) -> ConfigFile:
    """Read and check the config file; a missing file is an empty config."""
    path = path or paths.config_file()
    cfg = ConfigFile(path)
    raw = read_limited(path, MAX_CONFIG, "config file", ConfigError, missing_ok=True)
    if raw is None:
        return cfg
    import tomllib  # only when there is a file: most runs in CI and cron have none

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}",
            hint="fix the line named above, or move the file away to start afresh",
        ) from None
    cfg.data = _check_config(path, data, cfg.warnings)
    return cfg


def _check_config(path: Path, data: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "default_profile":
            if not isinstance(value, str) or not PROFILE_RE.match(value):
                raise ConfigError(f"config file {path}: default_profile must be a profile name")
            out[key] = value
        elif key == "profiles":
            if not isinstance(value, dict):
                raise ConfigError(f"config file {path}: 'profiles' must be a table")
            out[key] = {}
            for name, table in value.items():
                if not PROFILE_RE.match(name):
                    raise ConfigError(f"config file {path}: invalid profile name {name!r}")
                if not isinstance(table, dict):
                    raise ConfigError(f"config file {path}: [profiles.{name}] must be a table")
                out[key][name] = _check_profile(path, name, table, warnings)
        else:
            warnings.append(f"config file {path}: unknown key {key!r} ignored")
    return out


def _check_profile(path: Path, name: str, table: dict, warnings: list[str]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in table.items():
        spec = SPECS.get(key)
        if spec is None:
            warnings.append(f"config file {path}: unknown setting {key!r} in profile {name!r}")
            continue
        if isinstance(value, dict | list):
            raise ConfigError(f"config file {path}: profile {name!r}, {key} must be a single value")
        try:
            checked[key] = spec.parse(value)
        except ValueError as exc:
            raise ConfigError(f"config file {path}: profile {name!r}, {key} {exc}") from None
    return checked


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # JSON string escapes are a subset of TOML basic-string escapes; DEL must be escaped too.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def dump_config(data: Mapping[str, Any]) -> str:
    """Serialise the config (a flat schema) as TOML."""
    lines = ["# cloudchat-cli configuration. Edit with `cloudchat config set KEY VALUE`.", ""]
    if data.get("default_profile"):
        lines += [f"default_profile = {_toml_value(data['default_profile'])}", ""]
    for name, table in data.get("profiles", {}).items():
        lines.append(f"[profiles.{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    return "\n".join(lines)


# --- resolution ------------------------------------------------------------------------------


def select_profile(
    cfg: ConfigFile, flag: str | None, env: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """Return the active profile and its source: flag > CLOUDCHAT_PROFILE > config > default."""
    env = environment.current().env if env is None else env
    if flag:
        return check_profile_name(flag), "flag (--profile)"
    if env.get("CLOUDCHAT_PROFILE"):
        return check_profile_name(env["CLOUDCHAT_PROFILE"]), "env (CLOUDCHAT_PROFILE)"
    if cfg.default_profile():
        return cfg.default_profile(), f"config ({cfg.path})"
    return DEFAULT_PROFILE, "default"


def resolve(
    cfg: ConfigFile,
    profile: str,
    *,
    profile_source: str = "default",
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, tuple[Any, str]] | None = None,
) -> Settings:
    """Resolve every setting for ``profile``: flag > env > profile > default.

    ``overrides`` (value, source) beat everything; ``--sandbox`` uses them for ``base_url``.
    """
    env = environment.current().env if env is None else env
    flags = flags or {}
    overrides = overrides or {}
    table = cfg.profile(profile)
    items: dict[str, Resolved] = {}
    for name, spec in SPECS.items():
        if name in overrides:
            value, source = overrides[name]
            items[name] = Resolved(name, value, source)
        elif flags.get(name) is not None:
            items[name] = Resolved(name, _parse(spec, flags[name], "flag"), "flag")
        elif env.get(spec.env, "") != "":
            items[name] = Resolved(name, _parse(spec, env[spec.env], spec.env), "env", spec.env)
        elif name in table:
            items[name] = Resolved(name, table[name], "profile", f"{profile} in {cfg.path}")
        else:
            items[name] = Resolved(name, spec.default, "default")
    return Settings(profile, profile_source, items)


def _parse(spec: Spec, value: Any, where: str) -> Any:
    try:
        return spec.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{spec.name} from {where} {exc}") from None


def check_setting_name(key: str) -> Spec:
    """Return the spec of setting ``key`` or raise a usage error listing the known ones."""
    spec = SPECS.get(key)
    if spec is None:
        raise ConfigError(f"unknown setting {key!r}", hint=f"known settings: {', '.join(SPECS)}")
    return spec


def parse_setting(key: str, value: str) -> Any:
    """Parse a ``config set KEY VALUE`` pair, rejecting unknown keys and bad values."""
    parsed = _parse(check_setting_name(key), value, "the command line")
    if key in STORE_SETTINGS and redisurl.has_password(parsed):
        # argv is visible to every user of the machine (ps) and lands in shell history.
        raise ConfigError(
            f"{key}: a password on the command line is visible to other users",
            hint=f"set CLOUDCHAT_{key.upper()} in the environment (from a secret), or set the "
            "URL without the password here and add it by editing the 0600 config file",
        )
    return parsed
