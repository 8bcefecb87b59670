"""Ports for servers a test starts later, or stops and starts again on the same port.

A port found with bind(0) and then released can be handed by the kernel to any other bind(0)
or outgoing connection before the test uses it; with pytest-xdist workers running side by
side, that happens. These ports come from BELOW the kernel's ephemeral range, where the kernel
never hands out ports by itself, in a block of its own per xdist worker.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_next_port = [0]


def free_port() -> int:
    """A port free now, that no bind(0) elsewhere will be given meanwhile."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = max(1024, _ephemeral_low() - 8000)
    for _ in range(400):
        port = low + index * 400 + _next_port[0] % 400
        _next_port[0] += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
