"""A private ``redis-server`` for the tests: loopback, a free port, no persistence, own temp dir."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .ports import free_port

REDIS_SERVER = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs redis-server (apt install redis-server; .ci/run does)"
)


class RedisServer:
    """One redis-server process; ``kill()`` and ``start()`` again keep its port and password."""

    def __init__(self, tmp: Path, password: str | None = None, extra: tuple[str, ...] = (),
                 tls: tuple[Path, Path] | None = None):
        self.dir = tmp / f"redis-{id(self)}"
        self.dir.mkdir()
        self.password = password
        # A cluster node refuses ports above 55535 (it reserves port + 10000 by default).
        self.port = free_port()  # kept across a restart; a cluster node needs one < 55536
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None
        self.extra = extra
        self.tls = tls  # (certificate, key): the port speaks TLS only

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        port = ["--port", str(self.port)]
        if self.tls:
            cert, key = self.tls
            port = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                    "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                    "--tls-auth-clients", "no"]
        args = [REDIS_SERVER, "--bind", "127.0.0.1", *port,
                "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--daemonize", "no", "--loglevel", "notice", "--logfile", ""]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
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

    def factory(password: str | None = None, tls: tuple[Path, Path] | None = None
                ) -> RedisServer:
        server = RedisServer(tmp_path, password, tls=tls)
        server.start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(redis_factory) -> RedisServer:
    return redis_factory()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Three masters forming a Redis Cluster (no replicas), slots spread by redis-cli."""
    cli = shutil.which("redis-cli")
    if REDIS_SERVER is None or cli is None:
        pytest.skip("needs redis-server and redis-cli (apt install redis-server)")
    pytest.importorskip("redis")
    nodes = [RedisServer(tmp_path, extra=("--cluster-enabled", "yes", "--cluster-port",
                                          str(free_port()), "--cluster-config-file",
                                          "nodes.conf"))
             for _ in range(3)]
    try:
        for node in nodes:
            node.start()
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        # `--cluster create` returns once the slots are assigned; each node says
        # cluster_state:ok only once the gossip has converged. Redis has no way to wait for
        # that, so look until every node says it (a state, not a guessed delay).
        clients = [n.client() for n in nodes]
        deadline = time.monotonic() + 30
        while not all(c.cluster("info")["cluster_state"] == "ok" for c in clients):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not converge in 30 s")
            time.sleep(0.05)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
