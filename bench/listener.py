#!/usr/bin/env python3
"""Webhook listener benchmark: acknowledgement latency and throughput with --save.

Starts `cloudchat webhook listen --save DIR` and sends signed, distinct events over loopback:
one sender; 50 concurrent senders opening one connection per delivery (as CloudChat does);
50 keep-alive senders, each sending its deliveries one after another on one connection.
Latency is measured per delivery from connect (or, on a kept-alive connection, from the
first byte sent) to the last byte of the answer. Requests are built before the clock starts.
The listener's CPU time per delivery (user + system, from /proc) is much steadier than the
throughput on a shared machine, where the disk's fsync rate swings from minute to minute.

    python bench/listener.py                           # 2,000 deliveries per row
    python bench/listener.py --deliveries 500          # quicker
    python bench/listener.py --baseline /tmp/old-code  # the same rows for another checkout,
                                                       # interleaved round by round
    python bench/listener.py --dedupe-store redis://127.0.0.1:6379/15
                                # rows with and without shared dedupe, interleaved (the
                                # store's keys are distinct per run and expire in 7 days:
                                # use a scratch Redis or database)
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
RUN = os.urandom(4).hex()  # ids differ between invocations (a shared dedupe store remembers)


def build(host: str, i: int, *, close: bool = True) -> bytes:
    """One signed delivery."""
    body = json.dumps({"event": "message.received", "id": f"evt_bench_{RUN}_{i:07d}",
                       "timestamp": int(time.time()), "channel": "whatsapp",
                       "data": {"from": "6281234567890", "text": f"pesan {i}"}}).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return (f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-CloudChat-Signature: {sig}\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def post(host: str, port: int, request: bytes) -> tuple[float, int]:
    """One delivery on its own connection (the server closes it after the answer)."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - started
    return elapsed, int(data.split(b" ", 2)[1])


class KeptAlive:
    """A sender that keeps its connection: one request, then its answer, then the next."""

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post(self, request: bytes) -> tuple[float, int]:
        started = time.perf_counter()
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return time.perf_counter() - started, int(head.split(b" ", 2)[1])

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the listener closed a keep-alive connection")
        return data

    def close(self) -> None:
        self.sock.close()


def start(tmp: Path, code: Path | None, save: bool = True, store: str | None = None
          ) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "CLOUDCHAT_WEBHOOK_SECRET": SECRET, "CLOUDCHAT_NO_KEYRING": "1",
           "CLOUDCHAT_CONFIG_DIR": str(tmp / "cfg"), "CLOUDCHAT_STATE_DIR": str(tmp / "state"),
           "CLOUDCHAT_WEBHOOK_DEDUPE_STORE": store or "local"}
    if code is not None:  # another checkout's cloudchat_cli, imported before the installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudchat_cli", "webhook", "listen", "--port", "0",
         "--path", "/webhook", "--json", *(["--save", str(tmp / "events")] if save else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    url = line.split("Listening on ", 1)[1].split(" ")[0]
    host, port = url.split("//")[1].split("/")[0].split(":")
    return proc, host, int(port)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(host: str, port: int, senders: int, total: int, offset: int, keep_alive: bool,
        pid: int = 0) -> dict:
    cpu_before = cpu_seconds(pid)
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    requests = iter([build(host, offset + i, close=not keep_alive) for i in range(total)])

    def sender() -> None:
        conn = KeptAlive(host, port) if keep_alive else None
        try:
            for request in requests:
                elapsed, status = conn.post(request) if conn else post(host, port, request)
                with lock:
                    latencies.append(elapsed)
                    statuses.append(status)
        finally:
            if conn:
                conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"senders": senders, "mode": "keep-alive" if keep_alive else "per delivery",
            "deliveries": len(latencies), "ok": statuses.count(200),
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
            "max": latencies[-1] * 1000, "throughput": len(latencies) / wall,
            "cpu_us": (cpu_seconds(pid) - cpu_before) / len(latencies) * 1e6}


def measure(deliveries: int, senders: int, *, code: Path | None = None,
            keep_alive: bool = True, offset: int = 0, save: bool = True,
            store: str | None = None) -> list[dict]:
    """Run one listener; rows for 1 sender, ``senders`` per delivery, ``senders`` kept alive."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start(Path(tmp), code, save, store)
        try:
            rows = [run(host, port, 1, 200, offset + 10**6, False, proc.pid),
                    run(host, port, senders, deliveries, offset, False, proc.pid)]
            if keep_alive:
                rows.append(run(host, port, senders, deliveries, offset + 2 * 10**6, True,
                                proc.pid))
        finally:
            proc.terminate()
            proc.wait()
    return rows


def pressure() -> str:
    """How contended the machine is (Linux PSI: % of time some task waited), for the header."""
    parts = []
    for what in ("cpu", "io"):
        try:
            with open(f"/proc/pressure/{what}") as fh:
                some = fh.readline().split()[2].split("=")[1]
        except (OSError, IndexError):
            continue
        parts.append(f"{what} {some} %")
    return ", ".join(parts) or "n/a"


def _median_row(rows: list[dict]) -> dict:
    """The round with the median throughput (its latencies with it: they come together)."""
    return sorted(rows, key=lambda r: r["throughput"])[len(rows) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per code")
    parser.add_argument("--no-save", action="store_true", help="without --save: the HTTP "
                        "path alone, no disk")
    parser.add_argument("--baseline", type=Path, help="a checkout of other code to compare "
                        "(only its rows without keep-alive, if it has none)")
    parser.add_argument("--dedupe-store", metavar="URL", help="also run this code with "
                        "--dedupe-store URL (a scratch Redis), interleaved with the rows without")
    args = parser.parse_args()
    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline:
        codes.insert(0, ("baseline", args.baseline))
    if args.dedupe_store:
        codes.append(("this + dedupe", None))
    load_before, pressure_before = os.getloadavg(), pressure()
    results: dict[str, list[list[dict]]] = {name: [] for name, _ in codes}
    for r in range(args.rounds):
        # interleaved, so drift in the machine's load hits both, and in alternating order
        # (ABBA), so neither always follows the other's cleanup
        for name, code in (codes if r % 2 == 0 else codes[::-1]):
            if hasattr(os, "sync"):
                os.sync()  # the previous run's writes and deletions are not billed to this one
            results[name].append(measure(
                args.deliveries, args.senders, code=code, keep_alive=code is None,
                offset=r * 10**7, save=not args.no_save,
                store=args.dedupe_store if name == "this + dedupe" else None))
    load_after, pressure_after = os.getloadavg(), pressure()
    what = "without --save" if args.no_save else "with --save (fsync before each 200)"
    print(f"Listener {what}, deliveries over loopback; median "
          f"round of {args.rounds}; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after ({os.cpu_count()} CPUs); pressure (10 s) "
          f"{pressure_before} before, {pressure_after} after\n")
    print("| code | senders | connections | deliveries | 200s | p50 ack | p99 ack | max "
          "| throughput | listener CPU per delivery | target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    targets = {(1, "per delivery"): "p99 < 2 ms", (args.senders, "per delivery"): "p99 < 50 ms",
               (args.senders, "keep-alive"): "p99 < 25 ms, ≥ 2× per delivery"}
    medians: dict[tuple[str, str, int], dict] = {}
    for name, _ in codes:
        rounds = results[name]
        for i in range(len(rounds[0])):
            r = _median_row([one[i] for one in rounds])
            medians[(name, r["mode"], r["senders"])] = r
            print(f"| {name} | {r['senders']} | {r['mode']} | {r['deliveries']} | {r['ok']} "
                  f"| {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.1f} ms "
                  f"| {r['throughput']:.0f}/s | {r['cpu_us']:.0f} µs "
                  f"| {targets.get((r['senders'], r['mode']), '')} |")
    this_a = medians[("this", "per delivery", args.senders)]
    this_b = medians[("this", "keep-alive", args.senders)]
    print(f"\nkeep-alive / per delivery throughput: "
          f"{this_b['throughput'] / this_a['throughput']:.2f}×")
    if args.dedupe_store:
        for mode in ("per delivery", "keep-alive"):
            plain, shared = (medians[(n, mode, args.senders)] for n in ("this", "this + dedupe"))
            print(f"with / without --dedupe-store, {args.senders} senders {mode}: throughput "
                  f"{shared['throughput'] / plain['throughput']:.2f}×, p50 "
                  f"{shared['p50'] - plain['p50']:+.2f} ms, listener CPU per delivery "
                  f"{shared['cpu_us'] - plain['cpu_us']:+.0f} µs")
    if args.baseline:
        base_a = medians[("baseline", "per delivery", args.senders)]
        each = [t[1]["throughput"] / b[1]["throughput"]
                for t, b in zip(results["this"], results["baseline"], strict=True)]
        print(f"this / baseline throughput, {args.senders} senders per delivery: "
              f"{this_a['throughput'] / base_a['throughput']:.3f} between the median rounds; "
              f"median of the per-round ratios {statistics.median(each):.3f} (rounds: "
              f"{', '.join(f'{x:.3f}' for x in each)})")
        cpu = [t[1]["cpu_us"] / b[1]["cpu_us"]
               for t, b in zip(results["this"], results["baseline"], strict=True)
               if b[1]["cpu_us"]]
        if cpu:
            print(f"this / baseline listener CPU per delivery, {args.senders} senders per "
                  f"delivery: median of the per-round ratios {statistics.median(cpu):.3f}")

if __name__ == "__main__":
    main()
