#!/usr/bin/env python3
"""Webhook listener benchmark: acknowledgement latency and throughput with --save.

Starts `cloudchat webhook listen --save DIR` and sends signed, distinct events from 50 concurrent
senders (raw keep-alive-free HTTP/1.1 over loopback, one connection per delivery, as CloudChat
does). Latency is measured per delivery from connect to the last byte of the 200.

    python bench/listener.py                   # 2,000 deliveries, 50 senders
    python bench/listener.py --deliveries 500  # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SECRET = "whsec_bench_0123456789abcdef"


def build(host: str, i: int) -> bytes:
    """One signed delivery, prepared before the clock starts (the client's CPU is not measured)."""
    body = json.dumps({"event": "message.received", "id": f"evt_bench_{i:06d}",
                       "timestamp": int(time.time()), "channel": "whatsapp",
                       "data": {"from": "6281234567890", "text": f"pesan {i}"}}).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return (f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-CloudChat-Signature: {sig}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def post(host: str, port: int, request: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - started
    return elapsed, int(data.split(b" ", 2)[1])


def measure(deliveries: int, senders: int) -> list[dict]:
    """Run the listener; return one result row for 1 sender and one for ``senders``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CLOUDCHAT_WEBHOOK_SECRET": SECRET, "CLOUDCHAT_NO_KEYRING": "1",
               "CLOUDCHAT_CONFIG_DIR": str(Path(tmp) / "cfg")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudchat_cli", "webhook", "listen", "--port", "0",
             "--path", "/webhook", "--save", str(Path(tmp) / "events"), "--json"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        url = line.split("Listening on ", 1)[1].split(" ")[0]
        host, port = url.split("//")[1].split("/")[0].split(":")

        def run(count: int, offset: int) -> dict:
            latencies: list[float] = []
            statuses: list[int] = []
            lock = threading.Lock()
            total = deliveries if count > 1 else 200
            requests = iter([build(host, offset + i) for i in range(total)])

            def sender() -> None:
                for request in requests:
                    elapsed, status = post(host, int(port), request)
                    with lock:
                        latencies.append(elapsed)
                        statuses.append(status)

            started = time.perf_counter()
            threads = [threading.Thread(target=sender) for _ in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            latencies.sort()
            return {"senders": count, "deliveries": len(latencies), "ok": statuses.count(200),
                    "p50": statistics.median(latencies) * 1000,
                    "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
                    "max": latencies[-1] * 1000, "throughput": len(latencies) / wall}

        rows = [run(1, 10**6), run(senders, 0)]
        proc.terminate()
        proc.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=50)
    args = parser.parse_args()
    rows = measure(args.deliveries, args.senders)
    print("Listener with --save (fsync before each 200), deliveries over loopback\n")
    print("| senders | deliveries | 200s | p50 ack | p99 ack | max | throughput | target p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['senders']} | {r['deliveries']} | {r['ok']} | {r['p50']:.1f} ms "
              f"| {r['p99']:.1f} ms | {r['max']:.1f} ms | {r['throughput']:.0f}/s | < 50 ms |")


if __name__ == "__main__":
    main()
