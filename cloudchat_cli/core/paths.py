"""Where cloudchat keeps its files: config (settings, profiles) and state (throttle, journals)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from cloudchat_cli.core import environment

APP_NAME = "cloudchat"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return environment.current().env if env is None else env


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the config directory: ``CLOUDCHAT_CONFIG_DIR`` or the platform's user config dir
    (``env``: the invocation's variables unless given)."""
    override = _env(env).get("CLOUDCHAT_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return the state directory: ``CLOUDCHAT_STATE_DIR`` or the platform's user state dir
    (``env``: the invocation's variables unless given)."""
    override = _env(env).get("CLOUDCHAT_STATE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def config_file(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "config.toml"


def credentials_file(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "credentials.toml"


def ensure_private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` and any missing parents as 0700 directories.

    An existing directory is left alone unless ``tighten`` (cloudchat's own config dir): a
    user's ``--journal ./x`` or ``--save ./events`` must never chmod their working directory.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
    if tighten and not missing:
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o700)
    return path


def atomic_write(path: Path, data: str, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename, so readers never see half."""
    ensure_private_dir(path.parent, tighten=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
