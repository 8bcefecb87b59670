#!/usr/bin/env python3
"""Sandbox benchmark: start-up time and a 100-request run, as the test suite uses it.

Start-up is measured from spawning `cloudchat sandbox --port 0 --record FILE` to the line that
says it is listening (what every e2e test waits for). The request run sends 100 accepted
messages over loopback: on one keep-alive connection, and with a new connection per request.

    python bench/sandbox.py                 # 15 start-ups, 100 requests x 5 rounds
    python bench/sandbox.py --starts 5      # quicker
    git archive REV | tar -x -C /tmp/old && python bench/sandbox.py --against /tmp/old

With ``--against DIR`` (a source tree of another version) both versions are measured in the
same run, start-ups alternating, so a busy machine affects both columns alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk_test_bench_sandbox_0000000000"
BODY = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "Halo"}


def start(tmp: str, source: str | None = None) -> tuple[subprocess.Popen, str, float]:
    # Both versions start the same way: from a source tree, with this environment's packages.
    exe = [sys.executable, "-m", "cloudchat_cli"]
    env = {**os.environ, "CLOUDCHAT_NO_KEYRING": "1", "CLOUDCHAT_CONFIG_DIR": tmp,
           "PYTHONPATH": source or str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*exe, "sandbox", "--port", "0", "--quiet", "--rate-limit", "100000",
         "--record", str(Path(tmp) / "record.jsonl")],
        env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    return proc, line.rsplit("listening on ", 1)[1].strip(), elapsed


def run_requests(url: str, count: int, keep_alive: bool) -> float:
    headers = {"Authorization": f"Bearer {KEY}"}
    if not keep_alive:  # the client opens a new connection for each request
        headers["Connection"] = "close"
    with httpx.Client(headers=headers, timeout=10) as client:
        started = time.perf_counter()
        for _ in range(count):
            if client.post(url + "/messages", json=BODY).status_code != 201:
                raise SystemExit("unexpected status")
    return time.perf_counter() - started


def measure(tmp: str, source: str | None, args: argparse.Namespace) -> dict[str, list[float]]:
    proc, url, _ = start(tmp, source)
    try:
        return {"reuse": [run_requests(url, args.requests, True) for _ in range(args.rounds)],
                "fresh": [run_requests(url, args.requests, False) for _ in range(args.rounds)]}
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=15)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", metavar="DIR", help="source tree of a version to compare")
    args = parser.parse_args()
    sources = {"this": None, **({"against": args.against} if args.against else {})}
    with tempfile.TemporaryDirectory() as tmp:
        starts: dict[str, list[float]] = {name: [] for name in sources}
        for _ in range(args.starts):
            for name, source in sources.items():
                proc, _, elapsed = start(tmp, source)
                starts[name].append(elapsed)
                proc.terminate()
                proc.wait()
        runs = {name: measure(tmp, source, args) for name, source in sources.items()}
    names = list(sources)
    print("| measure (median, min) | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")

    def row(label: str, values: dict[str, list[float]]) -> None:
        cells = [f"{statistics.median(values[n]) * 1000:.0f} ms, {min(values[n]) * 1000:.0f} ms"
                 for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")

    row("start-up to 'listening'", starts)
    row(f"{args.requests} requests, one keep-alive connection",
        {n: runs[n]["reuse"] for n in names})
    row(f"{args.requests} requests, a connection each", {n: runs[n]["fresh"] for n in names})


if __name__ == "__main__":
    main()
