#!/usr/bin/env python3
"""Broadcast benchmark: send rate vs the limit, 429s, CPU per message, preflight memory.

1. `cloudchat broadcast` (the installed command, default concurrency) against the sandbox at
   0 s and 1 s latency; the steady rate comes from the sandbox's record of arrivals (see
   bench/throttle.py) and is compared with the design's ceiling W/(W+RTT+margin).
2. Peak RSS of `cloudchat broadcast --dry-run` (preflight + journal) for 10k and 1M rows.

    python bench/broadcast.py            # N=40 per 20 s, 4 windows; 10k and 1M rows
    python bench/broadcast.py --quick    # N=20 per 5 s, 3 windows; 10k and 100k rows
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 0.25
TEMPLATE = "Halo {name}, pesanan {order_id} sudah dikirim"


def cloudchat() -> list[str]:
    return [sys.executable, "-m", "cloudchat_cli"]


def make_csv(path: Path, rows: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["to", "name", "order_id"])
        for i in range(rows):
            writer.writerow([f"628{i:09d}1", f"Pelanggan {i}", f"ORD-{i}"])
    return path


def run_measured(args: list[str], env: dict) -> tuple[int, float, float, float]:
    """Run a command; return (exit code, wall s, CPU s, peak RSS MiB) of that child alone."""
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    wall = time.monotonic() - started
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def rate_scenario(latency: float, limit: int, window: float, windows: int, tmp: Path) -> dict:
    name = f"lat{latency:g}"
    record = tmp / f"{name}.jsonl"
    env = {**os.environ, "CLOUDCHAT_STATE_DIR": str(tmp / name),
           "CLOUDCHAT_CONFIG_DIR": str(tmp / name / "cfg"), "CLOUDCHAT_NO_KEYRING": "1"}
    sandbox = subprocess.Popen(
        [*cloudchat(), "sandbox", "--port", "0", "-q", "--rate-limit", str(limit),
         "--rate-window", str(window), "--latency", str(latency), "--record", str(record)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = sandbox.stdout.readline().rsplit(" ", 1)[1].strip()
    rows = limit * windows
    csv_path = make_csv(tmp / f"{name}.csv", rows)
    env.update(CLOUDCHAT_BASE_URL=url, CLOUDCHAT_API_KEY=f"sk_test_bench_{name}_0000000000",
               CLOUDCHAT_RATE_LIMIT=str(limit), CLOUDCHAT_RATE_WINDOW=str(window),
               CLOUDCHAT_RATE_MARGIN=str(MARGIN))
    code, wall, cpu, rss = run_measured(
        [*cloudchat(), "broadcast", str(csv_path), "-t", TEMPLATE, "--yes", "-q"], env)
    sandbox.terminate()
    sandbox.wait()
    records = [json.loads(line) for line in record.read_text().splitlines()]
    ok = sorted(r["ts"] for r in records if r["status"] == 201)
    steady = (len(ok) - limit) / (ok[-1] - ok[limit - 1])
    ceiling = window / (window + latency + 0.005 + MARGIN)
    return {"latency": latency, "exit": code, "sent": len(ok),
            "429s": sum(1 for r in records if r["status"] == 429),
            "fraction": steady / (limit / window), "ceiling": ceiling,
            "cpu_ms": cpu / max(1, len(ok)) * 1000, "wall": wall}


def rss_scenario(rows: int, tmp: Path) -> dict:
    csv_path = make_csv(tmp / f"rows{rows}.csv", rows)
    env = {**os.environ, "CLOUDCHAT_STATE_DIR": str(tmp / f"rss{rows}"),
           "CLOUDCHAT_CONFIG_DIR": str(tmp / "cfg"), "CLOUDCHAT_NO_KEYRING": "1"}
    code, wall, cpu, rss = run_measured(
        [*cloudchat(), "--sandbox", "broadcast", str(csv_path), "-t", TEMPLATE, "--dry-run",
         "--preview", "0"], env)
    return {"rows": rows, "exit": code, "rss": rss, "wall": wall, "size": csv_path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    limit, window, windows, big = (20, 5.0, 3, 100_000) if args.quick else (40, 20.0, 4, 1_000_000)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rates: list[dict] = []
        threads = [threading.Thread(target=lambda lat=lat: rates.append(
            rate_scenario(lat, limit, window, windows, tmp))) for lat in (0.0, 1.0)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss = [rss_scenario(n, tmp) for n in (10_000, big)]
    rates.sort(key=lambda r: r["latency"])
    print(f"Broadcast send rate: N={limit} per W={window:g} s, {limit * windows} rows, "
          f"default concurrency, margin {MARGIN} s\n")
    print("| sandbox latency | sent | 429s | achieved / (N/W) | design ceiling "
          "| achieved / ceiling | CPU per message | exit |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rates:
        print(f"| {r['latency']:g} s | {r['sent']} | {r['429s']} | {r['fraction']:.3f} "
              f"| {r['ceiling']:.3f} | {r['fraction'] / r['ceiling']:.3f} "
              f"| {r['cpu_ms']:.1f} ms | {r['exit']} |")
    print("\nPreflight (`broadcast --dry-run`): peak RSS of the whole process\n")
    print("| rows | CSV size | peak RSS | wall time | rows/s | exit |")
    print("|---|---|---|---|---|---|")
    for r in rss:
        print(f"| {r['rows']:,} | {r['size'] / 1e6:.1f} MB | {r['rss']:.1f} MiB "
              f"| {r['wall']:.1f} s | {r['rows'] / r['wall']:,.0f} | {r['exit']} |")


if __name__ == "__main__":
    main()
