"""The ``--version`` line, shared by the fast path in ``entry`` and the ``app`` option."""

from __future__ import annotations


def version_text() -> str:
    import platform

    from cloudchat_cli import __version__

    return (
        f"cloudchat-cli {__version__} (Python {platform.python_version()}, "
        f"{platform.system()}-{platform.machine()})"
    )
