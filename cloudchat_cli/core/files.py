"""Read a file the user named, checking before reading: a regular file, and not too large.

``Path.read_bytes()`` on a FIFO with no writer blocks forever, on ``/dev/zero`` it fills the
memory, and on a 10 GB file it reads 10 GB before any check can say no. Here the file is opened
without blocking, refused unless it is a regular file, and read only up to its limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cloudchat_cli.core.errors import CloudChatError, UsageError

MiB = 1024 * 1024


def read_limited(path: str | Path, limit: int, what: str,
                 error: type[CloudChatError] = UsageError, *, missing_ok: bool = False,
                 hint: str | None = None) -> bytes | None:
    """The bytes of ``path`` (a regular file of at most ``limit`` bytes), or ``error``.

    A missing file is an error too, unless ``missing_ok`` (then: None).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise error(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{what} {path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file (a pipe, FIFO or device)",
                        hint=hint)
        if st.st_size > limit:
            raise error(_too_large(what, path, limit))
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(MiB, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while we read
            raise error(_too_large(what, path, limit))
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _too_large(what: str, path: str | Path, limit: int) -> str:
    shown = f"{limit // MiB} MiB" if limit >= MiB else f"{limit // 1024} KiB"
    return f"{what} {path} is too large (more than {shown})"
