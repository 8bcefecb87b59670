"""The environment object, ``app.run()`` in-process, ``Session`` as a library, and layering."""

from __future__ import annotations

import ast
import io
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from cloudchat_cli import app
from cloudchat_cli.core import environment as environment_mod
from cloudchat_cli.core import paths
from cloudchat_cli.core.environment import Clock, Environment
from cloudchat_cli.core.errors import ConfigError
from cloudchat_cli.output import console
from cloudchat_cli.services.session import Session

from .conftest import TEST_KEY, base_env

PACKAGE = Path(app.__file__).resolve().parent
RECIPIENT = "6281234567890"
RED = "\x1b[1;31m"  # "Error:" in bold red; --no-color / NO_COLOR keep the bold only


class Tty(io.StringIO):
    """A captured stream that says it is a terminal, and counts how often it is asked."""

    asked = 0

    def isatty(self) -> bool:
        Tty.asked += 1
        return True


def make(env: dict[str, str], **kwargs) -> Environment:
    return Environment(env=env, stdin=io.StringIO(), stdout=io.StringIO(),
                       stderr=io.StringIO(), **kwargs)


def invoke(environment: Environment, *argv: str) -> tuple[int, str, str]:
    code = app.run(list(argv), environment)
    return code, environment.stdout.getvalue(), environment.stderr.getvalue()


# --- the object ---------------------------------------------------------------------------


def test_defaults_are_harmless():
    environment = Environment()
    assert dict(environment.env) == {}
    assert (environment.stdin_isatty, environment.stdout_isatty,
            environment.stderr_isatty) == (False, False, False)
    assert (environment.no_color, environment.debug) == (False, False)
    assert environment.stdin.read() == ""
    assert environment.columns is None


@pytest.mark.parametrize(("variables", "no_color", "debug"), [
    ({"NO_COLOR": "1", "CLOUDCHAT_DEBUG": "1"}, True, True),
    ({"NO_COLOR": "", "CLOUDCHAT_DEBUG": "0"}, False, False),
    ({"CLOUDCHAT_DEBUG": "yes"}, False, True),
])
def test_colour_and_debug_come_from_the_given_variables(variables, no_color, debug):
    environment = Environment(env=variables)
    assert (environment.no_color, environment.debug) == (no_color, debug)


def test_isatty_is_asked_once_per_stream_and_can_be_overridden():
    Tty.asked = 0
    environment = Environment(stdout=Tty(), stderr=io.StringIO(), stdin_isatty=True)
    assert (environment.stdin_isatty, environment.stdout_isatty,
            environment.stderr_isatty) == (True, True, False)
    for _ in range(3):
        assert console.Output(environment).environment.stdout_isatty
    assert Tty.asked == 1


@pytest.mark.parametrize(("columns", "width"), [("120", 120), ("0", None), ("wide", None)])
def test_columns_come_from_the_environment(columns, width):
    assert Environment(env={"COLUMNS": columns}).columns == width


def test_from_process_is_the_real_process():
    environment = Environment.from_process()
    assert environment.env is os.environ
    assert (environment.stdin, environment.stdout, environment.stderr) == (
        sys.stdin, sys.stdout, sys.stderr)


def test_the_session_gives_its_clients_the_environment_clock(tmp_path):
    slept: list[float] = []
    clock = Clock(time=lambda: 5.0, monotonic=lambda: 7.0, sleep=slept.append)
    env = {**base_env(tmp_path), "CLOUDCHAT_API_KEY": TEST_KEY}
    with Session.from_environment(Environment(env=env, clock=clock)) as session:
        client = session.client()
        assert (client.clock(), client.throttle.clock()) == (5.0, 5.0)
        client.sleep(1.5)
        client.throttle.sleep(2.5)
    assert slept == [1.5, 2.5]


def test_bound_environment_is_current_only_inside_the_block():
    outer, inner = Environment(env={"A": "1"}), Environment(env={"A": "2"})
    assert environment_mod.current().env is os.environ
    with environment_mod.bound(outer):
        with environment_mod.bound(inner):
            assert environment_mod.current() is inner
        assert environment_mod.current() is outer
    assert environment_mod.current().env is os.environ


def test_paths_follow_the_given_or_bound_environment(tmp_path):
    env = {"CLOUDCHAT_CONFIG_DIR": str(tmp_path / "c"), "CLOUDCHAT_STATE_DIR": str(tmp_path / "s")}
    assert paths.config_file(env) == tmp_path / "c" / "config.toml"
    assert paths.state_dir(env) == tmp_path / "s"
    with environment_mod.bound(Environment(env=env)):
        assert paths.credentials_file() == tmp_path / "c" / "credentials.toml"


# --- output -------------------------------------------------------------------------------


def test_output_writes_to_its_environment_streams_from_worker_threads():
    environment = make({})
    with console.bound(console.Output(environment)):
        worker = threading.Thread(target=console.info, args=("from a worker",))
        worker.start()
        worker.join()
        console.print_json({"a": 1})
    assert environment.stderr.getvalue() == "from a worker\n"
    assert environment.stdout.getvalue() == '{"a":1}\n'


def test_output_colour_follows_terminal_no_color_and_the_flag():
    def error_text(environment: Environment, no_color: bool = False) -> str:
        console.Output(environment, no_color=no_color).print_error("boom")
        return environment.stderr.getvalue()

    tty = {"TERM": "xterm-256color"}
    assert RED in error_text(make(tty, stderr_isatty=True))
    assert RED not in error_text(make(tty, stderr_isatty=True), no_color=True)  # bold stays
    assert RED not in error_text(make({**tty, "NO_COLOR": "1"}, stderr_isatty=True))
    assert error_text(make(tty)) == "Error: boom\n"  # not a terminal: plain text


# --- app.run in-process -------------------------------------------------------------------


@pytest.fixture
def world(tmp_path) -> dict[str, str]:
    return base_env(tmp_path)


def test_run_returns_the_code_and_writes_only_to_its_streams(world, capsys):
    saved = (sys.stdin, sys.stdout, sys.stderr)
    assert invoke(make(world), "--version")[:2] == (0, f"{app.version_text()}\n")
    code, out, err = invoke(make(world), "no-such-command")
    assert code == 2 and out == "" and "No such command" in err
    code, out, err = invoke(make(world), "send", "not-a-number", "Halo")
    assert (code, out) == (2, "") and err.startswith("Error: invalid WhatsApp number")
    assert (sys.stdin, sys.stdout, sys.stderr) == saved
    assert capsys.readouterr() == ("", "")


def test_debug_of_one_run_does_not_leak_into_the_next(world):
    code, _, err = invoke(make(world), "--debug", "--sandbox", "send", RECIPIENT, "Halo")
    assert code == 0 and "debug: → POST" in err
    code, _, err = invoke(make(world), "--sandbox", "send", RECIPIENT, "Halo")
    assert code == 0 and "debug:" not in err
    code, _, err = invoke(make({**world, "CLOUDCHAT_DEBUG": "1"}), "--sandbox", "send",
                          RECIPIENT, "Halo")
    assert code == 0 and "debug: → POST" in err


def test_no_color_of_one_run_does_not_leak_into_the_next(world):
    tty = {**world, "TERM": "xterm-256color"}
    code, _, err = invoke(make(tty, stderr_isatty=True), "--no-color", "send", "bad", "x")
    assert code == 2 and "Error:" in err and RED not in err
    code, _, err = invoke(make(tty, stderr_isatty=True), "send", "bad", "x")
    assert code == 2 and RED in err


def test_each_run_reads_its_own_config_dir(world, tmp_path):
    first = {**world, "CLOUDCHAT_CONFIG_DIR": str(tmp_path / "one")}
    second = {**world, "CLOUDCHAT_CONFIG_DIR": str(tmp_path / "two")}
    assert invoke(make(first), "config", "path")[:2] == (0, f"{tmp_path / 'one'}/config.toml\n")
    assert invoke(make(second), "config", "path")[:2] == (0, f"{tmp_path / 'two'}/config.toml\n")
    assert invoke(make(first), "config", "set", "base_url", "http://one.example:9/")[0] == 0
    shown = [json.loads(invoke(make(e), "config", "show", "--json")[1])["base_url"]
             for e in (first, second)]
    assert shown[0]["value"] == "http://one.example:9"
    assert shown[0]["source"].startswith("profile") and shown[1]["source"] == "default"
    assert not (Path(world["CLOUDCHAT_CONFIG_DIR"]) / "config.toml").exists()


def test_set_key_reads_the_secret_from_the_invocation_stdin(world, tmp_path):
    environment = Environment(env=world, stdin=io.StringIO(TEST_KEY + "\n"),
                              stdout=io.StringIO(), stderr=io.StringIO())
    code, _, err = invoke(environment, "config", "set-key", "--insecure-storage")
    assert code == 0 and "sk_test_…WXYZ" in err
    stored = (Path(world["CLOUDCHAT_CONFIG_DIR"]) / "credentials.toml").read_text()
    assert TEST_KEY in stored
    code, _, err = invoke(make(world), "config", "set-key", "--insecure-storage")
    assert code == 2 and "no API key given" in err  # this run's stdin is empty


def test_systemd_unit_names_the_invocation_variables(world, tmp_path):
    env = {**world, "CLOUDCHAT_PROFILE": "shop"}
    code, out, _ = invoke(make(env), "webhook", "listen", "--print-systemd-unit", "--no-verify")
    assert code == 0
    assert "Environment=CLOUDCHAT_PROFILE=shop" in out.splitlines()
    assert f"Environment=CLOUDCHAT_STATE_DIR={world['CLOUDCHAT_STATE_DIR']}" in out.splitlines()


def test_json_output_of_a_run_goes_to_its_stdout(world):
    code, out, err = invoke(make(world), "--sandbox", "send", RECIPIENT, "Halo", "--json")
    assert code == 0 and json.loads(out)["status"] == "queued" and err == ""


# --- Session as a library -----------------------------------------------------------------


def test_session_from_environment_sends_with_flags_over_env(tmp_path, sandbox):
    env = {**base_env(tmp_path), "CLOUDCHAT_API_KEY": TEST_KEY,
           "CLOUDCHAT_BASE_URL": "http://127.0.0.1:9/unused"}
    with Session.from_environment(Environment(env=env),
                                  flags={"base_url": sandbox.base_url}) as session:
        cfg = session.settings()
        assert (cfg.base_url, cfg.source("base_url").source) == (sandbox.base_url, "flag")
        response = session.client().request(
            "POST", "messages", json_body={"channel": "whatsapp", "to": RECIPIENT,
                                           "type": "text", "text": "Halo"})
        assert response.status == 201
    assert sandbox.statuses() == [201]
    # the throttle's file lives in this environment's state dir, not the process's
    assert list((Path(env["CLOUDCHAT_STATE_DIR"]) / "throttle").glob("*.sqlite3"))


def test_session_sandbox_comes_from_the_provider_only():
    started = []

    class Fake:
        base_url = "http://127.0.0.1:9/api/public/v1"

        def stop(self) -> None:
            started.append("stopped")

    with Session.from_environment(Environment(), sandbox_provider=lambda: started.append(
            "started") or Fake()) as session:
        assert session.settings().base_url == Fake.base_url
        assert session.api_key().source == "sandbox (--sandbox)"
    assert started == ["started", "stopped"]
    session = Session.from_environment(Environment())
    session.options.sandbox = True
    with pytest.raises(ConfigError, match="no sandbox provider"):
        session.sandbox()


# --- layering -----------------------------------------------------------------------------


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_services_never_import_the_sandbox():
    offenders = {str(p.relative_to(PACKAGE)): sorted(n for n in imports_of(p)
                                                     if n.startswith("cloudchat_cli.sandbox"))
                 for p in (PACKAGE / "services").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_credentials_holds_no_prompting_or_argv_policy():
    from cloudchat_cli.core import credentials

    imported = imports_of(PACKAGE / "core" / "credentials.py")
    assert not imported & {"getpass", "sys", "typer", "rich", "cloudchat_cli.output"}
    assert not hasattr(credentials, "read_secret_from_user")
    assert not hasattr(credentials, "refuse_argv_secret")


def test_app_and_entry_do_not_import_each_other_at_module_level():
    assert not any(n.startswith("cloudchat_cli.entry") for n in imports_of(PACKAGE / "app.py"))


# Reads of the process itself, allowed only in core/environment.py. Known remaining readers
# are listed with where they should get the environment from instead.
PROCESS_READS = ("os.environ", "os.getenv", "sys.stdin", "sys.stdout", "sys.stderr", ".isatty(")
NOT_YET: set[str] = set()  # none left: a new reader goes through the environment instead


def test_core_and_services_read_the_process_only_through_the_environment():
    readers = set()
    for path in [*(PACKAGE / "core").rglob("*.py"), *(PACKAGE / "services").rglob("*.py"),
                 PACKAGE / "app.py", PACKAGE / "output" / "console.py"]:
        text = path.read_text(encoding="utf-8")
        if any(read in text for read in PROCESS_READS):
            readers.add(str(path.relative_to(PACKAGE)))
    # app.py swaps sys.std* for an in-process run and main() builds from_process()
    assert readers - NOT_YET == {"core/environment.py", "app.py"}
