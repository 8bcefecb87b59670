"""``webhook listen --print-systemd-unit``: a unit that runs the same command, without secrets.

The command line is the one given (same options, same order), less the flag itself. A
``--secret-file`` becomes a systemd credential (``LoadCredential=``, read by systemd as root
and handed to the service in its private credentials directory); without one, the unit reads
the secret from a credential at ``/etc/cloudchat/webhook-secret``, which the operator creates.
The secret's value never appears in the unit.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

CREDENTIAL = "webhook-secret"
DEFAULT_SECRET = "/etc/cloudchat/webhook-secret"
ENV_FILE = "/etc/cloudchat/listen.env"
SELF_FLAG = "--print-systemd-unit"


class _Specifier(str):
    """A word of our own that uses a systemd specifier (``%d``): not escaped."""


def _quote(word: str) -> str:
    """One word of ``ExecStart=``, quoted for systemd: ``%`` and ``$`` are escaped, so a
    value is passed as written (systemd would expand specifiers and variables)."""
    if isinstance(word, _Specifier):
        return str(word)
    text = word.replace("%", "%%").replace("$", "$$")
    if text and all(c.isalnum() or c in "-_./:=,@+" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env(name: str, value: str) -> str:
    """An ``Environment=`` line: specifiers escaped, quoted when the value has spaces."""
    text = f"{name}={value}".replace("%", "%%")
    if any(c.isspace() or c in '"\\' for c in text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"Environment={text}"


def _executable(argv0: str) -> list[str]:
    if argv0.endswith(".py") or Path(argv0).name == "__main__.py":
        return [sys.executable, "-m", "cloudchat_cli"]
    found = argv0 if os.sep in argv0 else (shutil.which(argv0) or argv0)
    return [str(Path(found).absolute())]


def systemd_unit(argv: list[str], *, cwd: Path, user: str | None, state_dir: Path,
                 config_dir: Path, profile: str | None = None,
                 secret_file_env: str | None = None, no_verify: bool = False) -> str:
    """The unit for ``argv`` (``sys.argv``: the program, then its arguments)."""
    words = _executable(argv[0])
    creds: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == SELF_FLAG:
            i += 1
            continue
        value = None
        if arg == "--secret-file" and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith("--secret-file="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            words.append(arg)
            i += 1
            continue
        name = f"{CREDENTIAL}-{len(creds) + 1}"
        creds.append(f"LoadCredential={name}:{(cwd / value).absolute()}")
        words += ["--secret-file", _Specifier(f"%d/{name}")]
    lines = [
        "[Unit]",
        "Description=CloudChat webhook listener (cloudchat webhook listen)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
    ]
    if user and user != "root":
        lines.append(f"User={user}")
    lines += [f"WorkingDirectory={_quote(str(cwd))}",
              "# the same settings, opt-out list and outbox (without --save) as this shell's",
              _env("CLOUDCHAT_CONFIG_DIR", str(config_dir)),
              _env("CLOUDCHAT_STATE_DIR", str(state_dir))]
    if profile:
        lines.append(_env("CLOUDCHAT_PROFILE", profile))
    lines += ["Environment=CLOUDCHAT_NO_KEYRING=1",
              "# other settings that hold secrets (CLOUDCHAT_WEBHOOK_DEDUPE_STORE with its",
              "# password…): one NAME=value a line, readable by root only; optional",
              f"EnvironmentFile=-{ENV_FILE}"]
    if not no_verify and not creds:
        source = secret_file_env or DEFAULT_SECRET
        lines += ["# the webhook secret: a file only root reads (one secret per line); systemd",
                  "# hands it to the service without putting it in the environment or here",
                  f"LoadCredential={CREDENTIAL}:{source}",
                  f"Environment=CLOUDCHAT_WEBHOOK_SECRET_FILE=%d/{CREDENTIAL}"]
    lines += creds
    lines += [
        "ExecStart=" + " ".join(_quote(w) for w in words),
        "# SIGTERM: finish deliveries in flight; waiting events stay queued on disk",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "Restart=on-failure",
        "RestartSec=2",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
