"""A command's session: global options → config, profile, settings, credentials, API client.

Commands never build these themselves; they ask the session, which builds each part once and
only when needed (so ``--help`` and ``config path`` touch neither the keyring nor the network).

It is also the way to use cloudchat from Python: everything it reads comes from its
``Environment`` (variables, streams, clock), and a setting can be given as a flag, which wins
over the environment and the profile::

    from cloudchat_cli.core.environment import Environment
    from cloudchat_cli.services.session import Session

    env = Environment(env={"CLOUDCHAT_API_KEY": key, "CLOUDCHAT_NO_KEYRING": "1"})
    with Session.from_environment(env, flags={"base_url": url, "max_retries": 8}) as session:
        session.client().request("POST", "messages", json_body=body)

``--sandbox`` needs an emulator: the command layer passes ``sandbox_provider`` (a callable
returning a started server with ``base_url`` and ``stop()``); services never start one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cloudchat_cli.core import credentials, paths, settings
from cloudchat_cli.core import environment as _environment
from cloudchat_cli.core.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from cloudchat_cli.core.environment import Environment
    from cloudchat_cli.core.http import ApiClient, Notify
    from cloudchat_cli.core.throttle import Throttle

SANDBOX_KEY = "sk_test_sandbox_embedded_0000000000"


class SandboxHandle(Protocol):
    """A started emulator: what ``--sandbox`` sends to, stopped when the session closes."""

    @property
    def base_url(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class GlobalOptions:
    profile: str | None = None
    debug: bool = False
    sandbox: bool = False
    no_color: bool = False
    api_key_file: str | None = None


@dataclass
class Session:
    options: GlobalOptions = field(default_factory=GlobalOptions)
    environment: Environment = field(default_factory=_environment.current)
    # Settings given as flags (``webhook listen --dedupe-store``, or a library caller): the
    # highest level of "flag > env > profile > default". Set them before ``settings()``.
    flags: dict[str, Any] = field(default_factory=dict)
    warn: Callable[[str], None] = lambda message: None
    debug_log: Callable[[str], None] | None = None
    sandbox_provider: Callable[[], SandboxHandle] | None = None
    # The command line after the program name (for the resume command a broadcast prints).
    argv: tuple[str, ...] = ()
    _config: settings.ConfigFile | None = None
    _settings: settings.Settings | None = None
    _sandbox: SandboxHandle | None = None
    _closers: list = field(default_factory=list)

    @classmethod
    def from_environment(
        cls,
        environment: Environment | None = None,
        *,
        profile: str | None = None,
        api_key_file: str | None = None,
        flags: Mapping[str, Any] | None = None,
        debug: bool | None = None,
        warn: Callable[[str], None] | None = None,
        debug_log: Callable[[str], None] | None = None,
        sandbox_provider: Callable[[], SandboxHandle] | None = None,
    ) -> Session:
        """A session for library use: ``environment`` defaults to the current one (the
        process's outside the CLI); ``sandbox_provider`` given means ``--sandbox``."""
        env = _environment.current() if environment is None else environment
        options = GlobalOptions(
            profile=profile,
            debug=bool(env.debug) if debug is None else debug,
            sandbox=sandbox_provider is not None,
            no_color=bool(env.no_color),
            api_key_file=api_key_file,
        )
        return cls(options, environment=env, flags=dict(flags or {}),
                   warn=warn or (lambda message: None), debug_log=debug_log,
                   sandbox_provider=sandbox_provider)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def env(self) -> Mapping[str, str]:
        """The environment variables this session reads (never the process's own directly)."""
        return self.environment.env

    # --- configuration ---------------------------------------------------------------------

    @property
    def config(self) -> settings.ConfigFile:
        if self._config is None:
            self._config = settings.load_config(paths.config_file(self.env))
            for warning in self._config.warnings:
                self.warn(warning)
        return self._config

    def profile(self) -> tuple[str, str]:
        return settings.select_profile(self.config, self.options.profile, self.env)

    def require_profile(self) -> str:
        """The active profile, which must exist unless it is the implicit ``default``."""
        name, source = self.profile()
        if not self.config.has_profile(name):
            raise ConfigError(
                f"profile {name!r} (from {source}) does not exist",
                hint=f"known profiles: {', '.join(self.config.profiles())}; "
                f"create it with `cloudchat -p {name} config set base_url URL`",
            )
        return name

    def settings(self) -> settings.Settings:
        if self._settings is None:
            name = self.require_profile()
            overrides = {}
            if self.options.sandbox:
                overrides["base_url"] = (self.sandbox().base_url, "sandbox (--sandbox)")
            self._settings = settings.resolve(
                self.config,
                name,
                profile_source=self.profile()[1],
                flags=self.flags,
                env=self.env,
                overrides=overrides,
            )
        return self._settings

    # --- credentials -----------------------------------------------------------------------

    def api_key(self) -> credentials.Secret:
        if self.options.sandbox:
            return credentials.Secret(SANDBOX_KEY, "sandbox (--sandbox)")
        secret = credentials.resolve_secret(
            credentials.API_KEY,
            self.settings().profile,
            file_flag=self.options.api_key_file,
            env=self.env,
            credentials_path=paths.credentials_file(self.env),
        )
        for warning in secret.warnings:
            self.warn(warning)
        return secret

    def webhook_secrets(self, secret_file: str | Path | list | None = None) -> list[str]:
        """The webhook secret(s) (several during a rotation). None is an input problem for
        the commands that need one (exit 2), not an auth failure."""
        from cloudchat_cli.core.errors import CredentialsError, UsageError
        from cloudchat_cli.services.webhooks.signature import split_secrets

        profile, _ = self.profile()
        try:
            secret = credentials.resolve_secret(
                credentials.WEBHOOK_SECRET, profile, file_flag=secret_file, env=self.env,
                credentials_path=paths.credentials_file(self.env))
        except CredentialsError as exc:
            raise UsageError(exc.message, hint=exc.hint) from None
        for warning in secret.warnings:
            self.warn(warning)
        secrets = split_secrets(secret.value)
        for i, value in enumerate(secrets, 1):
            if value != value.strip():
                self.warn(f"webhook secret {i} from {secret.source} begins or ends with "
                          "whitespace; it is used exactly as written")
        return secrets

    # --- the embedded sandbox and the client -----------------------------------------------

    def sandbox(self) -> SandboxHandle:
        """The emulator ``--sandbox`` sends to, started on first use by ``sandbox_provider``."""
        if self._sandbox is None:
            if self.sandbox_provider is None:
                raise ConfigError("--sandbox: this session has no sandbox provider",
                                  hint="pass sandbox_provider= when building the Session")
            self._sandbox = self.sandbox_provider()
        return self._sandbox

    def throttle(self, api_key: str, sleep: Callable[[float], None] | None = None) -> Throttle:
        """The key's throttle: shared through SQLite by every process using the key on this
        machine, or through Redis by every machine when ``rate_store`` is a Redis URL.
        ``sleep`` replaces the clock's for its waits (a stop that must end them).

        The embedded sandbox lives and dies with this process, so its window is kept in memory.
        """
        from cloudchat_cli.core.throttle import MemoryStore, Throttle

        cfg = self.settings()
        if self.options.sandbox:
            store = MemoryStore()
        elif cfg.rate_store != "local":
            store = self._redis_store(api_key)
        else:
            from cloudchat_cli.core.throttle_sqlite import SqliteStore, throttle_path

            store = SqliteStore(
                throttle_path(api_key, self.env), window=cfg.rate_window, margin=cfg.rate_margin
            )
            self._closers.append(store.close)
        clock = self.environment.clock
        return Throttle(
            cfg.rate_limit, cfg.rate_window, store=store, margin=cfg.rate_margin,
            timeout=cfg.timeout, clock=clock.time, sleep=sleep or clock.sleep,
        )

    def _redis_store(self, api_key: str):
        from cloudchat_cli.core import redisurl, throttle_redis

        cfg = self.settings()
        debug = self.debug_log if self.options.debug else None
        if debug:
            debug(f"rate store: {redisurl.mask_url(cfg.rate_store)} "
                  f"(from {cfg.source('rate_store').describe_source()})")
        timeout = min(cfg.timeout, 5.0)
        client = throttle_redis.connect(cfg.rate_store, timeout=timeout)
        store = throttle_redis.RedisStore(
            client, api_key, url=cfg.rate_store, window=cfg.rate_window,
            margin=cfg.rate_margin, debug=debug, timeout=timeout,
        )
        self._closers.append(store.close)
        return store

    def client(self, notify: Notify | None = None,
               sleep: Callable[[float], None] | None = None) -> ApiClient:
        """The API client, throttled; ``sleep`` (default: the environment clock's) is what its
        rate-limit and retry waits call, e.g. a ``GracefulStop``'s that ends them on Ctrl-C."""
        from cloudchat_cli.core.backoff import RetryPolicy
        from cloudchat_cli.core.http import ApiClient

        cfg = self.settings()
        key = self.api_key()
        throttle = self.throttle(key.value, sleep=sleep)
        client = ApiClient(
            cfg.base_url,
            key.value,
            timeout=cfg.timeout,
            retry=RetryPolicy(max_retries=cfg.max_retries, max_total_wait=cfg.max_retry_wait),
            throttle=throttle,
            debug=self.debug_log if self.options.debug else None,
            notify=notify,
            clock=self.environment.clock.time,
            sleep=sleep or self.environment.clock.sleep,
        )
        self._closers.append(client.close)
        return client

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        if self._sandbox is not None:
            self._sandbox.stop()
            self._sandbox = None
