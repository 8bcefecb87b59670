"""The ``cloudchat`` console script: answer ``--version`` before loading the CLI framework.

``cloudchat --version`` is what scripts and bug reports run most; importing Typer and building
the command tree would make it ~1.5x slower than ``import typer`` alone (bench/run). Everything
else goes to ``app.main()``, the one place errors become exit codes.
"""

from __future__ import annotations

import sys


def version_text() -> str:
    import platform

    from cloudchat_cli import __version__

    return (
        f"cloudchat-cli {__version__} (Python {platform.python_version()}, "
        f"{platform.system()}-{platform.machine()})"
    )


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        sys.stdout.write(version_text() + "\n")
        return
    from cloudchat_cli.app import main as run

    run()
