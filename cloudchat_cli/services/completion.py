"""Shell completion scripts and where each shell looks for them in the user's home.

``pip install`` into a prefix puts the scripts in ``share/`` where the system shells look;
``pipx``/``uv tool install`` do not, so ``cloudchat completion install`` writes them into the
user's own completion directory for that shell.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloudchat_cli.core import environment

SHELLS = ("bash", "zsh", "fish")

# Typer's zsh script only registers itself with compdef, so when zsh autoloads it from fpath the
# first TAB of every shell does nothing. This one completes at once when autoloaded.
ZSH_SCRIPT = """#compdef cloudchat

_cloudchat() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _CLOUDCHAT_COMPLETE=complete_zsh cloudchat)
}

if [[ $zsh_eval_context[-1] == loadautofunc || $funcstack[1] == _cloudchat ]]; then
  # autoloaded from $fpath on the first TAB: this call is a completion, so complete now
  _cloudchat "$@"
else
  # sourced (. or eval): register for the next TAB
  compdef _cloudchat cloudchat
fi
"""


@dataclass
class Installed:
    path: Path
    notes: list[str] = field(default_factory=list)


def _data_home(env: Mapping[str, str], home: Path) -> Path:
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")


def _config_home(env: Mapping[str, str], home: Path) -> Path:
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config")


def zsh_fpath(env: Mapping[str, str]) -> list[Path]:
    """The user's $fpath as an interactive zsh sets it (its .zshrc), or [] if unknown."""
    try:
        proc = subprocess.run(
            ["zsh", "-i", "-c", "print -rl -- $fpath"], env=dict(env), capture_output=True,
            text=True, timeout=10, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [Path(line) for line in proc.stdout.splitlines() if line.startswith("/")]


def target(shell: str, env: Mapping[str, str] | None = None, home: Path | None = None,
           fpath: list[Path] | None = None) -> Installed:
    """Where ``completion install`` writes the script for ``shell``, and what to tell the user."""
    env = environment.current().env if env is None else env
    home = Path(env.get("HOME") or Path.home()) if home is None else home
    if shell == "bash":
        base = env.get("BASH_COMPLETION_USER_DIR") or _data_home(env, home) / "bash-completion"
        return Installed(Path(base) / "completions" / "cloudchat",
                         ["bash-completion loads it on the first TAB of a new shell "
                          "(needs the bash-completion package)"])
    if shell == "fish":
        return Installed(_config_home(env, home) / "fish" / "completions" / "cloudchat.fish",
                         ["fish loads it on the first TAB of a new shell"])
    fpath = zsh_fpath(env) if fpath is None else fpath
    for directory in fpath:
        if directory.is_relative_to(home) and os.access(directory, os.W_OK):
            return Installed(directory / "_cloudchat",
                             [f"{directory} is on your $fpath; open a new shell (if completion "
                              "still does not appear: rm -f ~/.zcompdump*; compinit)"])
    directory = home / ".zfunc"
    return Installed(directory / "_cloudchat", [
        f"{directory} is not on your $fpath yet: add this line to ~/.zshrc before compinit "
        "(oh-my-zsh: before it is sourced), then open a new shell:",
        "fpath=(~/.zfunc $fpath)",
    ])


def install(shell: str, text: str, env: Mapping[str, str] | None = None,
            home: Path | None = None, fpath: list[Path] | None = None) -> Installed:
    """Write ``text``, the script for ``shell``, into the user's completion directory for it
    (the script itself comes from the command layer: Typer writes bash's and fish's)."""
    where = target(shell, env, home, fpath)
    where.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = where.path.with_name(where.path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(where.path)
    return where
