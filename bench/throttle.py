#!/usr/bin/env python3
"""Throttle benchmark: achieved rate vs the limit, and 429s, against the real sandbox.

Runs four scenarios at once (1 or 4 client processes; sandbox latency 0 s or 2 s), each with its
own sandbox, key and state directory. Every client process sends through the shared SQLite
throttle with enough threads to keep the window full even when responses are slow. Figures come
from the sandbox's own record of arrivals:

    steady rate = (requests - N) / (last arrival - N-th arrival)

i.e. the rate once the first window is full, which is what a long broadcast sees.
The design's ceiling is N / (W + RTT + margin); both are printed as fractions of N/W.

    python bench/throttle.py                # N=40 per W=20 s, 4 windows (about 1.5 minutes)
    python bench/throttle.py --quick        # N=20 per W=5 s, 3 windows (about 20 s)
"""

from __future__ import annotations

import argparse
import json
import math
import os
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


def worker(args: argparse.Namespace) -> None:
    """One client process: send ``count`` messages through the shared throttle."""
    from cloudchat_cli.core.backoff import RetryPolicy
    from cloudchat_cli.core.http import ApiClient
    from cloudchat_cli.core.throttle import Throttle
    from cloudchat_cli.core.throttle_sqlite import SqliteStore, throttle_path

    store = SqliteStore(throttle_path(args.key), window=args.window, margin=MARGIN)
    throttle = Throttle(args.limit, args.window, store=store, margin=MARGIN, timeout=30)
    client = ApiClient(args.url, args.key, timeout=30, throttle=throttle,
                       retry=RetryPolicy(max_retries=8))
    body = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "bench"}
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(lambda _: client.request("POST", "messages", json_body=body),
                      range(args.count)))
    client.close()


def scenario(procs: int, latency: float, limit: int, window: float, windows: int,
             tmp: Path) -> dict:
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
             "--limit", str(limit), "--window", str(window),
             "--count", str(total // procs + (1 if i < total % procs else 0)),
             "--threads", str(max(1, math.ceil(threads / procs)))],
            env=env,
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
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.limit, args.window, args.windows = 20, 5.0, 3
    with tempfile.TemporaryDirectory() as tmp:
        results: list[dict] = []
        threads = [
            threading.Thread(target=lambda p=p, lat=lat: results.append(
                scenario(p, lat, args.limit, args.window, args.windows, Path(tmp))))
            for p in (1, 4) for lat in (0.0, 2.0)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    results.sort(key=lambda r: (r["latency"], r["processes"]))
    print(f"Throttle: N={args.limit} per W={args.window:g} s, {args.windows} windows, "
          f"margin {MARGIN} s (rates as a fraction of N/W)\n")
    print("| processes | sandbox latency | requests | 429s | steady rate (req/s) "
          "| achieved / (N/W) | design ceiling W/(W+RTT+margin) | achieved / ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['processes']} | {r['latency']:g} s | {r['requests']} | {r['429s']} "
              f"| {r['rate']:.3f} | {r['fraction']:.3f} | {r['ceiling']:.3f} "
              f"| {r['fraction'] / r['ceiling']:.3f} |")


if __name__ == "__main__":
    main()
