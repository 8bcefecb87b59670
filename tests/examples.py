"""Find the shell examples in the README and in ``--help``, and run them like a user would.

Used by ``test_examples.py``. What "like a user" means here:

- Each ```sh block of the README is cut into commands (``\\`` continuations joined, here-documents
  kept with their command); the line before a block may say
  ``<!-- examples-test: skip (REASON) -->`` — the block is then skipped with that reason.
- A help text's examples are its lines that start with ``cloudchat`` (or pipe into it, or set
  variables for it); the description after two or more spaces is not part of the command.
- Commands run in order, in one working directory, through ``bash -o pipefail``, with standard
  input holding a key (what a user would paste at ``set-key``'s prompt). Each must exit 0.
- Servers (``cloudchat sandbox``, ``cloudchat webhook listen``, anything ending in ``&``) stay up,
  as in another terminal, until a later server needs their port or the run ends; then they get
  Ctrl-C (SIGINT to their process group) and must exit 0.
- Fixed ports (127.0.0.1:8787, --port 8080, …) are replaced by free ones, the same everywhere,
  so runs cannot collide; a default port is made explicit. A port no example serves stands for
  the user's own app: a small server answering 200 plays it.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port

SKIP_BLOCK = re.compile(r"<!--\s*examples-test:\s*skip\s*\((?P<why>.+?)\)\s*-->")
SERVER = re.compile(r"^cloudchat\s+(?:-\S+\s+)*(?:sandbox(?!\s+inbound)\b|webhook\s+listen\b)")
# Options whose default is a fixed local port, made explicit so that it can be remapped:
# (the command, where the option goes, the option, its default).
_CMD = r"^cloudchat\s+(?:-\S+\s+)*"
DEFAULTS = (
    (re.compile(_CMD + r"sandbox\s+inbound\b"), r"sandbox\s+inbound", "--url",
     "http://127.0.0.1:8787"),
    (re.compile(_CMD + r"sandbox(?!\s+inbound)\b"), r"sandbox", "--port", "8787"),
    (re.compile(_CMD + r"webhook\s+listen\b"), r"webhook\s+listen", "--port", "8080"),
)
PORT_REFS = re.compile(r"(?P<pre>127\.0\.0\.1:|localhost:|--port[ =])(?P<port>[1-9][0-9]{1,4})\b")
READY = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))", re.IGNORECASE)


@dataclass
class Example:
    where: str  # README.md:LINE, or the help text it came from
    command: str  # as a user would paste it (continuations and here-documents included)
    skip: str | None = None

    @property
    def flat(self) -> str:
        """One line, without the here-document, the trailing comment or leading variables."""
        text = self.command.split("\n", 1)[0] if "<<" in self.command else self.command
        text = re.sub(r"\s*\\\n\s*", " ", text)
        text = strip_comment(text).strip()
        return re.sub(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)+", "", text)

    @property
    def is_server(self) -> bool:
        return bool(SERVER.match(self.flat)) or self.flat.endswith("&")


def strip_comment(line: str) -> str:
    """Cut a shell comment (`` # …`` outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


# --- finding the examples ----------------------------------------------------------------------


def split_commands(lines: list[str], first_line: int, label: str, skip: str | None
                   ) -> list[Example]:
    examples = []
    k = 0
    while k < len(lines):
        number = first_line + k
        text = lines[k]
        k += 1
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        while text.rstrip().endswith("\\") and k < len(lines):
            text += "\n" + lines[k]
            k += 1
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)", strip_comment(text))
        if heredoc:
            while k < len(lines):
                text += "\n" + lines[k]
                k += 1
                if lines[k - 1].strip() == heredoc.group(1):
                    break
        examples.append(Example(f"{label}:{number}", text, skip))
    return examples


def readme_examples(path: Path) -> list[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    examples: list[Example] = []
    before = ""
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            if lines[i].strip():
                before = lines[i]
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if fence.group(1) in ("sh", "bash", "shell"):
            skip = SKIP_BLOCK.search(before)
            examples += split_commands(lines[i + 1:end], i + 2, path.name,
                                       skip.group("why") if skip else None)
        before = ""
        i = end + 1
    return examples


def help_texts() -> list[tuple[str, str]]:
    """(label, text) of every help and epilog, hidden default commands included."""
    import typer

    from cloudchat_cli.app import app

    found: list[tuple[str, str]] = []

    def walk(command, path: str) -> None:
        for text in (command.help, command.epilog):
            if text and all(text != seen for _, seen in found):
                found.append((f"`{path} --help`", text))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(None):
                sub = command.get_command(None, name)
                if sub is not None:
                    walk(sub, path if sub.hidden else f"{path} {name}")

    walk(typer.main.get_command(app), "cloudchat")
    return found


def help_examples() -> list[Example]:
    examples: list[Example] = []
    for label, text in help_texts():
        lines = []
        for line in re.sub(r"\[/?[a-z ]+\]", "", text).splitlines():
            line = line.strip()
            starts = re.match(r"^(cloudchat\s|[A-Z_]+=|(printf|echo|cat)\s.*\|\s*cloudchat\s)",
                              line)
            if starts or (lines and lines[-1].endswith("\\")):
                lines.append(re.split(r"\s{2,}", line, maxsplit=1)[0])
            elif lines and lines[-1] != "":
                lines.append("")
        examples += split_commands(lines, 1, label, None)
    for example in examples:
        example.where = example.where.rsplit(":", 1)[0]
    return examples


# --- running them ------------------------------------------------------------------------------




class PortMap:
    """Each fixed port of the examples gets a free port, the same one wherever it appears."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}

    def explicit(self, example: Example) -> str:
        """The command with each option whose default is a fixed port spelled out."""
        command = example.command
        for pattern, after, option, value in DEFAULTS:
            if pattern.match(example.flat) and not re.search(rf"{option}[ =]", example.flat):
                return re.sub(rf"(\bcloudchat\s(?:.*?\s)?{after}\b)", rf"\1 {option} {value}",
                              command, count=1)
        return command

    def apply(self, command: str) -> str:
        return PORT_REFS.sub(
            lambda m: f"{m['pre']}{self.ports.setdefault(m['port'], free_port())}", command)


@dataclass
class Server:
    example: Example
    proc: subprocess.Popen
    port: int
    log: Path

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as in a terminal: SIGINT to the process group; the cloudchat exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(60)  # a hang guard, not a time limit
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return -9, self.log.read_text(errors="replace")
        output = self.log.read_text(errors="replace")
        status = re.findall(r"__cloudchat_status=(\d+)", output)
        return (int(status[-1]) if status else self.proc.returncode), output


class App(http.server.BaseHTTPRequestHandler):
    """The user's own app: accepts whatever is POSTed."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Runner:
    cwd: Path
    env: dict[str, str]
    stdin: str
    ports: PortMap = field(default_factory=PortMap)
    servers: list[Server] = field(default_factory=list)
    apps: list[http.server.HTTPServer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def run_all(self, examples: list[Example]) -> None:
        commands = [(e, self.ports.apply(self.ports.explicit(e))) for e in examples if not e.skip]
        served = {str(self._port_of(c)) for e, c in commands if e.is_server}
        for port in sorted(set(self.ports.ports.values())):
            if str(port) not in served:
                self._start_app(port)
        try:
            for example, command in commands:
                if example.flat.startswith("export "):
                    for name, value in re.findall(r"(\w+)=(\S+)", example.flat):
                        self.env[name] = value.strip("'\"")
                    continue
                if example.is_server:
                    self._serve(example, command)
                else:
                    self._run(example, command)
        finally:
            for server in list(self.servers):
                self._stop(server)
            for app in self.apps:
                app.shutdown()
                app.server_close()

    def _port_of(self, command: str) -> int | None:
        port = re.search(r"--port[ =](\d+)", command)
        return int(port.group(1)) if port else None

    def _start_app(self, port: int) -> None:
        app = http.server.ThreadingHTTPServer(("127.0.0.1", port), App)
        threading.Thread(target=app.serve_forever, kwargs={"poll_interval": 0.01},
                 daemon=True).start()
        self.apps.append(app)

    def _run(self, example: Example, command: str) -> None:
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], cwd=self.cwd, env=self.env,
            input=self.stdin, capture_output=True, text=True, timeout=120,
        )
        self.ran.append(example.where)
        if proc.returncode != 0:
            self.failures.append(f"{example.where}: exit {proc.returncode}: {command}\n"
                                 f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}")

    def _serve(self, example: Example, command: str) -> None:
        port = self._port_of(command)
        for server in list(self.servers):
            if port and server.port == port:  # as a user would: stop the old one first
                self._stop(server)
        command = re.sub(r"\s*&\s*(#.*)?$", "", command.rstrip())
        log = self.cwd.parent / f"server-{len(self.ran)}.log"
        script = f"trap : INT\n{command}\necho \"__cloudchat_status=${{PIPESTATUS[0]}}\" >&2\n"
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-o", "pipefail", "-c", script], cwd=self.cwd, env=self.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ran.append(example.where)
        url = self._wait_ready(proc, log)
        if url is None:
            proc.wait()
            self.failures.append(f"{example.where}: did not start: {command}\n"
                                 f"{log.read_text(errors='replace')[-1500:]}")
            return
        self.servers.append(Server(example, proc, int(url.rsplit(":", 1)[1].split("/")[0]), log))

    def _wait_ready(self, proc: subprocess.Popen, log: Path) -> str | None:
        """The server's banner, then an answer to one HTTP request: it is serving."""
        import httpx

        deadline = time.monotonic() + 60  # a hang guard, not a time limit
        while time.monotonic() < deadline and proc.poll() is None:
            found = READY.search(log.read_text(errors="replace"))
            if found:
                try:
                    httpx.get(found.group(1), timeout=10)
                    return found.group(1)
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)  # polling a condition, not waiting in its stead
        return None

    def _stop(self, server: Server) -> None:
        self.servers.remove(server)
        status, output = server.stop()
        if status != 0:
            self.failures.append(f"{server.example.where}: exit {status} after Ctrl-C: "
                                 f"{server.example.command}\n{output[-1500:]}")


def iter_skipped(examples: list[Example]) -> Iterator[str]:
    for example in examples:
        if example.skip:
            yield f"{example.where}: {example.skip}"
