"""Shells: completion as real shells load it, negative ids, and help at 80 columns."""

import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cloudchat_cli.commands import completion as completion_cmd
from cloudchat_cli.services import completion as completion_service

from .conftest import TEST_KEY, cloudchat_exe, run_cli

ROOT = Path(__file__).resolve().parents[1]


class PtyShell:
    """An interactive shell under a pseudo-terminal, driven by keystrokes."""

    def __init__(self, argv, env):
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.seen = b""

    def expect(self, token: bytes, timeout: float = 30) -> bool:
        """Read until ``token`` appears (True) or the shell goes quiet for ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while token not in self.seen:
            ready, _, _ = select.select([self.master], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                return False
            try:
                self.seen += os.read(self.master, 4096)
            except OSError:
                return False
        return True

    def type(self, keys: bytes) -> None:
        self.seen = b""
        os.write(self.master, keys)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def zsh_session(tmp_path, env, zshrc: str) -> PtyShell:
    home = tmp_path / "zhome"
    home.mkdir(exist_ok=True)
    (home / ".zshrc").write_text(zshrc + f"\nautoload -Uz compinit\ncompinit -u -d {home}/dump\n"
                                 "PS1='READY> '\n")
    exe_dir = str(Path(cloudchat_exe()).parent)
    shell = PtyShell(["zsh", "-i"], {**env, "ZDOTDIR": str(home), "TERM": "xterm",
                                     "PATH": f"{exe_dir}:{env['PATH']}"})
    assert shell.expect(b"READY>"), shell.seen
    return shell


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed (.ci/run installs it)")
def test_zsh_completes_on_the_first_tab_when_autoloaded_from_fpath(tmp_path, env):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "_cloudchat").write_text((ROOT / "completions" / "cloudchat.zsh").read_text())
    shell = zsh_session(tmp_path, env, f"fpath=({functions} $fpath)")
    try:
        shell.type(b"cloudchat send --chan\t")  # the first TAB of this shell
        assert shell.expect(b"--channel"), shell.seen
        shell.type(b"te\t")
        assert shell.expect(b"telegram"), shell.seen
    finally:
        shell.close()


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed (.ci/run installs it)")
def test_zsh_completes_when_the_script_is_sourced(tmp_path, env):
    shell = zsh_session(tmp_path, env, "")
    try:
        shell.type(f"source {ROOT / 'completions' / 'cloudchat.zsh'}\n".encode())
        assert shell.expect(b"READY>")
        shell.type(b"cloudchat webh\t")
        assert shell.expect(b"webhook"), shell.seen
    finally:
        shell.close()


def test_completion_install_writes_each_shells_user_directory(tmp_path, env):
    home = Path(env["HOME"])
    proc = run_cli("completion", "install", "bash", env=env)
    bash = home / ".local/share/bash-completion/completions/cloudchat"
    assert proc.returncode == 0 and str(bash) in proc.stderr
    assert bash.read_text() == (ROOT / "completions" / "cloudchat.bash").read_text()
    proc = run_cli("completion", "install", "fish", env=env)
    fish = home / ".config/fish/completions/cloudchat.fish"
    assert proc.returncode == 0 and str(fish) in proc.stderr and fish.is_file()
    proc = run_cli("completion", "install", "tcsh", env=env)
    assert proc.returncode == 2 and "unknown shell 'tcsh'" in proc.stderr


def test_zsh_install_uses_a_directory_already_on_fpath(tmp_path):
    home = tmp_path / "home"
    mine = home / ".zsh" / "completions"
    mine.mkdir(parents=True)
    zsh = completion_cmd.script("zsh")
    done = completion_service.install("zsh", zsh, env={"HOME": str(home)}, home=home,
                                      fpath=[Path("/usr/share/zsh/functions"), mine])
    assert done.path == mine / "_cloudchat" and "is on your $fpath" in done.notes[0]
    assert done.path.read_text() == (ROOT / "completions" / "cloudchat.zsh").read_text()
    done = completion_service.install("zsh", zsh, env={"HOME": str(home)}, home=home, fpath=[])
    assert done.path == home / ".zfunc" / "_cloudchat"
    assert done.notes[-1] == "fpath=(~/.zfunc $fpath)"


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed (.ci/run installs it)")
def test_zsh_install_reads_the_users_fpath_and_completes_there(tmp_path, env):
    home = Path(env["HOME"])
    (home / ".zsh-completions").mkdir()
    env = {**env, "ZDOTDIR": str(home)}
    (home / ".zshrc").write_text("fpath=(~/.zsh-completions $fpath)\n")
    proc = run_cli("completion", "install", "zsh", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"{home}/.zsh-completions/_cloudchat" in proc.stderr
    shell = zsh_session(tmp_path, env, "fpath=(~/.zsh-completions $fpath)")
    try:
        shell.type(b"cloudchat send --chan\t")
        assert shell.expect(b"--channel"), shell.seen
    finally:
        shell.close()


# --- Typer's own completion options exist nowhere --------------------------------------------

def _all_commands() -> list[list[str]]:
    """Every command path users can type, found by walking the command tree."""
    import typer

    from cloudchat_cli.app import app

    found: list[list[str]] = []

    def walk(command, words):
        found.append(words)
        for name in getattr(command, "list_commands", lambda ctx: [])(None):
            sub = command.get_command(None, name)
            if sub is not None and not sub.hidden:
                walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _all_commands()


def help_at_80(env, words):
    proc = run_cli(*words, "--help", env={**env, "COLUMNS": "80", "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "root")
def test_no_typer_completion_options(env, words):
    assert "completion" not in help_at_80(env, words).split("Options")[1].split("╰")[0] or \
        words[:1] == ["completion"]
    assert "--install-completion" not in help_at_80(env, words)


def test_typer_install_completion_is_refused(env):
    proc = run_cli("send", "628", "x", "--install-completion", env=env)
    assert proc.returncode == 2 and "No such option" in proc.stderr
    assert not (Path(env["HOME"]) / ".bashrc").exists()


# --- help texts at 80 columns ----------------------------------------------------------------

def _command(words):
    import typer

    from cloudchat_cli.app import app
    from cloudchat_cli.commands.groups import DefaultCommandGroup

    command = typer.main.get_command(app)
    for word in words:
        command = command.get_command(None, word)
    if isinstance(command, DefaultCommandGroup):  # its --help is the default command's
        command = command.get_command(None, command.default)
    return command


def _plain(text: str) -> str:
    return re.sub(r"\[/?(?:bold|dim|italic|red|green)\]", "", text)


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "root")
def test_help_at_80_columns_keeps_examples_and_option_texts_whole(env, words):
    rendered = help_at_80(env, words)
    lines = [line.strip(" │") for line in rendered.splitlines()]
    command = _command(words)
    texts = [command.help or "", command.epilog or ""]
    for text in texts:
        for paragraph in _plain(text).split("\n\n"):
            rows = paragraph.strip("\n").split("\n")
            if all(row.startswith("  ") for row in rows if row.strip()):
                for row in rows:  # an example block: each line must come out on one line
                    if row.strip():
                        assert any(row.strip() in line for line in lines), (
                            f"example split at 80 columns: {row.strip()!r}\n{rendered}")
            else:
                assert len(rows) == 1, f"pre-wrapped help paragraph: {paragraph!r}"
    words_out = set(" ".join(lines).split())
    for param in command.params:
        for word in _plain(getattr(param, "help", None) or "").split():
            assert word in words_out or word.strip(".,;:()") in " ".join(lines), (
                f"option text cut off at 80 columns: {param.name}: {word!r}\n{rendered}")


# --- negative numeric recipients ------------------------------------------------------------

def test_telegram_group_id_is_an_argument_not_an_option(env, sandbox):
    aenv = {**env, "CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    for argv in (["send", "-1001234567890", "Hi", "-c", "tg"],
                 ["send", "-c", "tg", "-1001234567890", "-5"]):
        proc = run_cli(*argv, env=aenv)
        assert proc.returncode == 0, proc.stderr
    sent = [(r["request"]["to"], r["request"]["text"]) for r in sandbox.records()]
    assert sent == [("-1001234567890", "Hi"), ("-1001234567890", "-5")]
    proc = run_cli("send", "-1001234567890", "Hi", "-c", "tg", "-x", env=aenv)
    assert proc.returncode == 2 and "No such option: -x" in proc.stderr
