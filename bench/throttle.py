#!/usr/bin/env python3
"""Throttle benchmark: achieved rate vs the limit, and 429s, against the real sandbox.

Runs four scenarios at once (1 or 4 client processes; sandbox latency 0 s or 2 s), each with its
own sandbox, key and state directory. Every client process sends through the shared SQLite
throttle with enough threads to keep the window full even when responses are slow. Figures come
from the sandbox's own record of arrivals:

    steady rate = (requests - N) / (last arrival - N-th arrival)

i.e. the rate once the first window is full, which is what a long broadcast sees.
The design's ceiling is N / (W + RTT + margin); both are printed as fractions of N/W.

With ``--store redis`` the window lives in a private redis-server instead (started here, no
persistence) and every client process has its own state directory, as separate machines
would: only Redis is shared. A second table gives the limiter's own cost per request
(acquire + release, no waiting) for SQLite and Redis side by side.

    python bench/throttle.py                # N=40 per W=20 s, 4 windows (about 1.5 minutes)
    python bench/throttle.py --quick        # N=20 per W=5 s, 3 windows (about 20 s)
    python bench/throttle.py --quick --store redis   # 4 "machines" through Redis + overhead
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARGIN = 0.25


def session_for(store: str, key: str, env: dict, **flags):
    """A library ``Session`` with the bench's settings as flags (they win over env and profile)."""
    from cloudchat_cli.core.environment import Environment
    from cloudchat_cli.services.session import Session

    env = {**env, "CLOUDCHAT_API_KEY": key, "CLOUDCHAT_NO_KEYRING": "1"}
    return Session.from_environment(Environment(env=env),
                                    flags={"rate_store": store, "rate_margin": MARGIN, **flags})


def worker(args: argparse.Namespace) -> None:
    """One client process: send ``count`` messages through the shared throttle."""
    with session_for(args.store, args.key, dict(os.environ), base_url=args.url,
                     rate_limit=args.limit, rate_window=args.window, timeout=30,
                     max_retries=8) as session:
        client = session.client()
        body = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "bench"}
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda _: client.request("POST", "messages", json_body=body),
                          range(args.count)))


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A private redis-server on a free loopback port, no persistence."""
    exe = shutil.which("redis-server")
    if not exe:
        raise SystemExit("--store redis needs redis-server (apt install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp / "redis"
    data.mkdir()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(data), "--logfile", ""],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, f"redis://127.0.0.1:{port}/0"


def scenario(procs: int, latency: float, limit: int, window: float, windows: int,
             tmp: Path, store: str = "local") -> dict:
    name = f"p{procs}-l{latency:g}"
    record = tmp / f"{name}.jsonl"
    env = {**os.environ, "CLOUDCHAT_STATE_DIR": str(tmp / name)}
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "cloudchat_cli", "sandbox", "--port", "0", "-q",
         "--rate-limit", str(limit), "--rate-window", str(window), "--latency", str(latency),
         "--record", str(record)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    url = sandbox.stdout.readline().rsplit(" ", 1)[1].strip()
    total = limit * windows
    # Enough requests in flight to fill the window while each one takes `latency`.
    threads = max(2, math.ceil(limit * (latency + 0.05) / window) + 2)
    key = f"sk_test_bench_{name}_000000000000"
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--url", url, "--key", key,
             "--limit", str(limit), "--window", str(window), "--store", store,
             "--count", str(total // procs + (1 if i < total % procs else 0)),
             # Each process can fill the window alone: otherwise the last process still
             # sending runs with a fraction of the threads and the tail, not the limiter,
             # sets the rate.
             "--threads", str(threads)],
            # Through Redis, each process is a machine of its own: nothing on disk shared.
            env=env if store == "local" else {**env,
                                              "CLOUDCHAT_STATE_DIR": str(tmp / f"{name}-{i}")},
        )
        for i in range(procs)
    ]
    codes = [w.wait() for w in workers]
    elapsed = time.monotonic() - started
    sandbox.terminate()
    sandbox.wait()
    if any(codes):  # a figure from crashed workers would be meaningless
        raise SystemExit(f"throttle bench: a worker process failed (exit codes {codes})")
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    ok = sorted(r["ts"] for r in rows if r["status"] == 201)
    rtt = latency + 0.005
    # From the N-th to the last arrival: whole cycles of the window, however the first
    # window's burst was spread by the number of threads.
    steady = (len(ok) - limit) / (ok[-1] - ok[limit - 1]) if len(ok) > limit else float("nan")
    return {
        "store": "local" if store == "local" else "redis",
        "processes": procs,
        "latency": latency,
        "requests": len(ok),
        "429s": sum(1 for r in rows if r["status"] == 429),
        "failed workers": sum(1 for c in codes if c),
        "rate": steady,
        "fraction": steady / (limit / window),
        "ceiling": window / (window + rtt + MARGIN),
        "elapsed": elapsed,
    }


def overhead(store: str, tmp: Path, count: int) -> dict:
    """The limiter's own cost per request: acquire + release with slots always free."""
    env = {**os.environ, "CLOUDCHAT_STATE_DIR": str(tmp / f"overhead-{store[:5]}")}
    session = session_for(store, "sk_test_overhead_00000", env, rate_limit=1_000_000,
                          rate_window=60.0)
    throttle = session.throttle("sk_test_overhead_00000")
    for _ in range(20):  # warm up: connections, scripts loaded, database created
        throttle.release(throttle.acquire())
    times = []
    for _ in range(count):
        started = time.perf_counter()
        throttle.release(throttle.acquire())
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    session.close()
    return {"store": "SQLite (local)" if store == "local" else "Redis (loopback)",
            "median": statistics.median(times), "p99": times[int(len(times) * 0.99) - 1],
            "count": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--count", type=int)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="N=20 per 5 s, 3 windows")
    parser.add_argument("--store", default="local",
                        help="local (SQLite), redis (a private redis-server), or a redis:// URL")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.limit, args.window, args.windows = 20, 5.0, 3
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc = None
        store = args.store
        if store == "redis":
            redis_proc, store = start_redis(Path(tmp))
        try:
            results = run_scenarios(args, store, Path(tmp))
            costs = []
            if store != "local":
                costs = [overhead("local", Path(tmp), 2000 if args.quick else 10000),
                         overhead(store, Path(tmp), 2000 if args.quick else 10000)]
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait()
    print(f"Throttle ({'SQLite, one machine' if store == 'local' else 'Redis, shared'}): "
          f"N={args.limit} per W={args.window:g} s, {args.windows} windows, "
          f"margin {MARGIN} s (rates as a fraction of N/W)\n")
    print("| store | processes | sandbox latency | requests | 429s | steady rate (req/s) "
          "| achieved / (N/W) | design ceiling W/(W+RTT+margin) | achieved / ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['store']} | {r['processes']} | {r['latency']:g} s | {r['requests']} "
              f"| {r['429s']} | {r['rate']:.3f} | {r['fraction']:.3f} | {r['ceiling']:.3f} "
              f"| {r['fraction'] / r['ceiling']:.3f} |")
    if costs:
        print("\nLimiter overhead per request (acquire + release, never waiting):\n")
        print("| store | requests | median (ms) | p99 (ms) |")
        print("|---|---|---|---|")
        for c in costs:
            print(f"| {c['store']} | {c['count']} | {c['median']:.3f} | {c['p99']:.3f} |")


def run_scenarios(args: argparse.Namespace, store: str, tmp: Path) -> list[dict]:
    # Through Redis the point is several machines: 4 processes, each on its own state dir.
    shapes = [(p, lat) for p in (1, 4) for lat in (0.0, 2.0)] if store == "local" else [
        (4, 0.0), (4, 2.0)]
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda p=p, lat=lat: results.append(
            scenario(p, lat, args.limit, args.window, args.windows, tmp, store)))
        for p, lat in shapes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.sort(key=lambda r: (r["latency"], r["processes"]))
    return results


if __name__ == "__main__":
    main()
