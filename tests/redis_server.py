"""A private ``redis-server`` for the tests: loopback, a free port, no persistence, own temp dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs redis-server (apt install redis-server; .ci/run does)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process; ``kill()`` and ``start()`` again keep its port and password."""

    def __init__(self, tmp: Path, password: str | None = None):
        self.dir = tmp / f"redis-{id(self)}"
        self.dir.mkdir()
        self.password = password
        self.port = free_port()
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port),
                "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--daemonize", "no", "--loglevel", "notice", "--logfile", ""]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in self.proc.stdout:  # ready when it says so: no sleeping
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server did not start:\n" + "".join(seen))

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator:
    if REDIS_SERVER is None:
        pytest.skip("needs redis-server (apt install redis-server; .ci/run installs it)")
    pytest.importorskip("redis")
    started: list[RedisServer] = []

    def factory(password: str | None = None) -> RedisServer:
        server = RedisServer(tmp_path, password)
        server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(redis_factory) -> RedisServer:
    return redis_factory()
