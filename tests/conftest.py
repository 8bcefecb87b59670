"""Shared fixtures: an isolated environment, the installed CLI, a real sandbox, a real keyring."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from .inprocess import invoke
from .redis_server import redis_cluster, redis_factory, redis_server  # noqa: F401  (fixtures)

# Bytecode caches are written even where PYTHONDONTWRITEBYTECODE is set (container images set
# it): without them every xdist worker, and every `cloudchat` an e2e test starts, compiles the
# package and its dependencies from source again (the fast lane: 33 s → 24 s on 2 cores).
sys.dont_write_bytecode = False

# CI runs each property test with a fixed seed (a red CI must be reproducible); locally each
# run explores new inputs. Failures found locally are replayed from .hypothesis/.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

TEST_KEY = "sk_test_e2e_0123456789abcdefWXYZ"

# --- the two lanes -----------------------------------------------------------------------------
# `pytest -m "not e2e"` is the fast lane: everything in this one process. A test that starts
# any process (the installed cloudchat, a sandbox process, a shell, curl, redis-server, D-Bus)
# is an e2e test and must say so; an unmarked one that does fails with a pointer here.

_running: dict[str, pytest.Item | None] = {"item": None}
_spawned: pytest.StashKey[list[str]] = pytest.StashKey()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _running["item"] = item
    yield
    _running["item"] = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield
    if item.stash.get(_spawned, None):
        pytest.fail(f"started a process without @pytest.mark.e2e: {item.stash[_spawned]}")
    return result


def pytest_configure(config: pytest.Config) -> None:
    execute_child = subprocess.Popen._execute_child

    def guarded(self, args, *rest, **kw):
        item = _running["item"]
        if item is not None and item.get_closest_marker("e2e") is None:
            what = str(args if isinstance(args, str) else args[0])
            item.stash.setdefault(_spawned, []).append(what)
            raise AssertionError(
                f"{item.nodeid} starts a process ({what}): mark it @pytest.mark.e2e, or run "
                "it in-process (run_cli, sandbox); the fast lane runs in one process")
        return execute_child(self, args, *rest, **kw)

    subprocess.Popen._execute_child = guarded
    for name in ("fork", "forkpty"):  # pty.fork(), then exec: a process all the same
        original = getattr(os, name)

        def guarded_fork(*args, _original=original, _name=name):
            item = _running["item"]
            if item is not None and item.get_closest_marker("e2e") is None:
                item.stash.setdefault(_spawned, []).append(f"os.{_name}()")
            return _original(*args)

        setattr(os, name, guarded_fork)



def cloudchat_exe() -> str:
    exe = shutil.which("cloudchat") or str(Path(sys.executable).with_name("cloudchat"))
    if not Path(exe).exists():
        pytest.fail("the `cloudchat` command is not installed: pip install -e '.[test]'")
    return exe


def base_env(tmp: Path) -> dict[str, str]:
    """A clean environment: own config/state dirs, no keyring, no inherited CLOUDCHAT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCHAT_")}
    for var in ("DBUS_SESSION_BUS_ADDRESS", "PYTHON_KEYRING_BACKEND", "NO_COLOR"):
        env.pop(var, None)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
        CLOUDCHAT_CONFIG_DIR=str(tmp / "config"),
        CLOUDCHAT_STATE_DIR=str(tmp / "state"),
        CLOUDCHAT_NO_KEYRING="1",
        COLUMNS="200",
    )
    return env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return base_env(tmp_path)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For in-process tests: the same isolation applied to os.environ."""
    for key in list(os.environ):
        if key.startswith("CLOUDCHAT_"):
            monkeypatch.delenv(key)
    for key, value in base_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    return tmp_path


def run_cli(
    *args: str,
    env: dict[str, str],
    input: str | bytes | None = None,
    timeout: float = 60,
    cwd: str | Path | None = None,
    process: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``cloudchat *args``; text output. In this process (tests/inprocess.py) unless
    ``process=True``: then the installed ``cloudchat`` runs as a subprocess (an e2e test)."""
    data = input.encode() if isinstance(input, str) else input
    if not process:
        code, out, err = invoke(list(args), env, data or b"", cwd=cwd, timeout=timeout)
        return subprocess.CompletedProcess(["cloudchat", *args], code,
                                           out.decode("utf-8", "replace"),
                                           err.decode("utf-8", "replace"))
    proc = subprocess.run(
        [cloudchat_exe(), *args],
        env=env,
        input=data,
        stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
    )
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


@pytest.fixture
def cli(env: dict[str, str]):
    """``cli(*args, input=…, process=False, **env_vars)``: run_cli with the isolated env."""

    def run(*args: str, input: str | bytes | None = None, timeout: float = 60,
            cwd: str | Path | None = None, process: bool = False, **extra: str):
        return run_cli(*args, env={**env, **extra}, input=input, timeout=timeout, cwd=cwd,
                       process=process)

    return run


def read_terminal(fd: int, timeout: float = 30) -> bytes:
    """Everything a child writes to its pseudo-terminal until it closes it (EOF, or EIO on
    Linux). Quiet for ``timeout`` seconds means it waits for input: an AssertionError."""
    import select

    seen = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise AssertionError(f"the terminal went quiet (waiting for input?) after {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return seen
        if not chunk:
            return seen
        seen += chunk


# --- the sandbox: on a thread of this process, or as a `cloudchat sandbox` process ------------


@dataclass
class Sandbox:
    base_url: str
    record_path: Path
    lines: queue.Queue
    proc: subprocess.Popen | None = None  # only for a sandbox process
    errors: queue.Queue = field(default_factory=queue.Queue)  # in-thread: its stderr lines
    server: object = None  # only for an in-thread sandbox (a SandboxServer)

    def readline(self, timeout: float = 30) -> str:
        """The next line the sandbox printed (one per accepted message, or a 429)."""
        return self.lines.get(timeout=timeout)

    def records(self) -> list[dict]:
        if not self.record_path.exists():
            return []
        lines = self.record_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def statuses(self) -> list[int | None]:
        return [r["status"] for r in self.records()]

    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.server is not None

    def stderr(self) -> str:
        """What the sandbox told people (webhook attempts, its own errors); a process's whole
        stderr once it has stopped."""
        if self.proc is not None:
            return self.proc.stderr.read()
        return "".join(self.errors.queue)

    def stop(self) -> int:
        if self.server is not None:
            server, self.server = self.server, None
            try:
                server.stop()
            except OSError as exc:  # a process would print it and exit 1, as `cloudchat` does
                self.errors.put(f"Error: internal error: {type(exc).__name__}: {exc}\n")
                return 1
            return 0
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class _Lines:
    """A text stream that hands each complete line to a queue (the sandbox's stdout)."""

    def __init__(self, lines: queue.Queue):
        self.lines, self.partial = lines, ""

    def write(self, text: str) -> int:
        *done, self.partial = (self.partial + text).split("\n")
        for line in done:
            self.lines.put(line + "\n")
        return len(text)

    def flush(self) -> None:
        pass


def start_sandbox_thread(tmp: Path, env: dict[str, str], *args: str,
                         name: str = "sandbox") -> Sandbox:
    """The sandbox on a thread of this process, configured by the same options as
    ``cloudchat sandbox`` (parsed by that command's own parser)."""
    import typer

    from cloudchat_cli.commands.sandbox import app as sandbox_app
    from cloudchat_cli.sandbox.server import SandboxConfig, SandboxServer

    record = tmp / f"{name}-record.jsonl"
    group = typer.main.get_command(sandbox_app)
    serve = group.get_command(None, "serve")
    params = serve.make_context("sandbox", ["--port", "0", "--record", str(record), *args]).params
    secret = None
    if params["webhook_url"]:
        path = params["webhook_secret_file"]
        secret = (path.read_text(encoding="utf-8").strip() if path
                  else env["CLOUDCHAT_WEBHOOK_SECRET"]).split(",")[0]
    config = SandboxConfig(
        host=params["host"], port=params["port"], keys=list(params["key"]),
        rate_limit=params["rate_limit"], rate_window=params["rate_window"],
        latency=params["latency"], fail_rate=params["fail_rate"],
        drop_rate=params["drop_rate"], seed=params["seed"], record=params["record"],
        quiet=params["quiet"], webhook_url=params["webhook_url"], webhook_secret=secret,
        status_delay=params["status_delay"])
    lines: queue.Queue = queue.Queue()
    server = SandboxServer(config, out=_Lines(lines))
    # Its diagnostics go where a process's stderr would: not into a command's captured stderr.
    errors: queue.Queue = queue.Queue()
    server.state.log = lambda line: errors.put(line + "\n")
    if server.state.webhooks is not None:
        server.state.webhooks.log = server.state.log
    server.start_background()
    return Sandbox(server.base_url, record, lines, errors=errors, server=server)


def start_sandbox(tmp: Path, env: dict[str, str], *args: str, name: str = "sandbox") -> Sandbox:
    """Start ``cloudchat sandbox`` as a process on a free port; ready once it prints its URL."""
    record = tmp / f"{name}-record.jsonl"
    proc = subprocess.Popen(
        [cloudchat_exe(), "sandbox", "--port", "0", "--record", str(record), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r} {proc.stderr.read()!r}")
    url = line.rsplit("listening on ", 1)[1].strip()
    lines: queue.Queue = queue.Queue()

    def drain() -> None:  # a full pipe must never block the sandbox
        for out_line in proc.stdout:
            lines.put(out_line)

    threading.Thread(target=drain, daemon=True).start()
    return Sandbox(url, record, lines, proc=proc)


@pytest.fixture
def sandbox_factory(tmp_path: Path, env: dict[str, str]) -> Iterator:
    """``sandbox_factory(*sandbox_options, env=…, process=False)``: in-thread by default;
    ``process=True`` for a test that needs the `cloudchat sandbox` process itself."""
    started: list[Sandbox] = []

    def factory(*args: str, env: dict[str, str] = env, process: bool = False) -> Sandbox:
        start = start_sandbox if process else start_sandbox_thread
        box = start(tmp_path, env, *args, name=f"sandbox{len(started)}")
        started.append(box)
        return box

    yield factory
    for box in started:
        box.stop()


@pytest.fixture
def sandbox(sandbox_factory) -> Sandbox:
    return sandbox_factory()


@pytest.fixture
def sandbox_process(sandbox_factory) -> Sandbox:
    """A `cloudchat sandbox` process (e2e tests: smoke tests, several CLI processes)."""
    return sandbox_factory(process=True)


@pytest.fixture
def api_env(env: dict[str, str], sandbox: Sandbox) -> dict[str, str]:
    """Environment pointing the CLI at the sandbox with a test key from the env var."""
    return {**env, "CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}


# --- a real Secret Service ---------------------------------------------------------------------


@dataclass
class SecretService:
    env: dict[str, str]


@pytest.fixture
def secret_service(tmp_path: Path, env: dict[str, str]) -> Iterator[SecretService]:
    """A private D-Bus session with gnome-keyring's secrets component, unlocked."""
    dbus = shutil.which("dbus-daemon")
    gkd = shutil.which("gnome-keyring-daemon")
    if not dbus or not gkd:
        pytest.skip("needs dbus-daemon and gnome-keyring-daemon (apt install dbus gnome-keyring)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    kenv = {k: v for k, v in env.items() if k != "CLOUDCHAT_NO_KEYRING"}
    kenv["XDG_RUNTIME_DIR"] = str(runtime)
    bus = subprocess.Popen(
        [dbus, "--session", "--nofork", "--print-address=1", "--nopidfile"],
        env=kenv,
        stdout=subprocess.PIPE,
        text=True,
    )
    address = bus.stdout.readline().strip()
    kenv["DBUS_SESSION_BUS_ADDRESS"] = address
    keyring_daemon = subprocess.Popen(
        [gkd, "--unlock", "--components=secrets", "--foreground"],
        env=kenv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    keyring_daemon.stdin.write("throwaway-test-password")
    keyring_daemon.stdin.close()
    try:
        _wait_for_bus_name(kenv, "org.freedesktop.secrets", keyring_daemon)
        yield SecretService(kenv)
    finally:
        for proc in (keyring_daemon, bus):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_bus_name(env: dict[str, str], name: str, daemon: subprocess.Popen) -> None:
    """Block until ``name`` is owned on the bus (each check is a round trip to the bus)."""
    for _ in range(500):
        if daemon.poll() is not None:
            pytest.fail(f"gnome-keyring-daemon exited with {daemon.returncode}")
        reply = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/",
             "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
            env=env, capture_output=True, text=True, timeout=10,
        )
        if "boolean true" in reply.stdout:
            return
    pytest.fail(f"{name} never appeared on the private D-Bus session")


@pytest.fixture
def wenv(env: dict[str, str]) -> dict[str, str]:
    """The isolated environment with the webhook secret the listener tests sign with."""
    from .test_e2e_webhook import SECRET

    return {**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def start(wenv: dict[str, str]):
    """Start `cloudchat webhook listen` processes that must stop cleanly (exit 0, no
    traceback) when the test ends."""
    from .test_e2e_webhook import Listener

    started = []

    def factory(*args: str, env: dict[str, str] | None = None):
        item = Listener(env or wenv, *args)
        started.append(item)
        return item

    yield factory
    for item in started:
        assert item.stop() == 0
        assert "Traceback" not in "".join(item.errors.queue)


# --- the two production transports (core/http.py: choose_transport) -----------------------------


@pytest.fixture(params=["wire", "httpx"])
def transport(request) -> str:
    """Each transport the API client can run on, by its CLOUDCHAT_TRANSPORT name: the transport
    contract tests (test_wire.py, test_faults_unit.py) take it and run once per transport."""
    return request.param


def contract_client(name: str, timeout: float = 5, **kw):
    """An httpx.Client on transport ``name``, configured as ApiClient configures it."""
    import httpx

    from cloudchat_cli.core.deadline import NO_KEEPALIVE
    from cloudchat_cli.core.http import choose_transport

    _, chosen = choose_transport({"CLOUDCHAT_TRANSPORT": name})
    assert (chosen is None) == (name == "httpx")
    if chosen is None:  # httpx's own: no keep-alive, so the deadline watchdog sees every socket
        return httpx.Client(timeout=timeout, trust_env=False, limits=NO_KEEPALIVE, **kw)
    return httpx.Client(transport=chosen, timeout=timeout, **kw)


# --- the webhook listener on a thread of this process -----------------------------------------


@pytest.fixture
def listener_thread():
    """``start(config, prepare=None, **kw)``: a ``Listener(config, **kw)`` serving on a thread
    of this process (``prepare(listener)`` runs first); each is stopped and joined at the end."""
    from cloudchat_cli.services.webhooks.listener import Listener

    running = []

    def start(config, prepare=None, **kw) -> Listener:
        lis = Listener(config, **kw)
        if prepare is not None:
            prepare(lis)
        thread = threading.Thread(target=lis.serve_forever)
        thread.start()  # the socket already listens: requests wait in its backlog meanwhile
        running.append((lis, thread))
        return lis

    yield start
    for lis, thread in running:
        lis.front.stop()
        thread.join(30)
        lis.shutdown()
        assert not thread.is_alive()
