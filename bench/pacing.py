#!/usr/bin/env python3
"""Paced broadcast benchmark: achieved rate against the --rate asked, and inter-arrival times.

Each scenario runs the installed CLI (`python -m cloudchat_cli broadcast`) against its own
sandbox and reads the arrivals from the sandbox's record. In the `auto` scenario a
`cloudchat send` runs every few seconds meanwhile (the App's own traffic): its wall time shows
whether it waited behind the broadcast.

    python bench/pacing.py                 # App 30 per 10 s, --rate 120/min, 200 rows (~2 min)
    python bench/pacing.py --rows 40       # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MARGIN = 0.05


def cloudchat() -> list[str]:
    return [sys.executable, "-m", "cloudchat_cli"]


def make_csv(path: Path, rows: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["to", "name"])
        for i in range(rows):
            writer.writerow([f"628{i:09d}1", f"Pelanggan {i}"])
    return path


def scenario(name: str, spacing: str, args, tmp: Path, sends: bool = False) -> dict:
    record = tmp / f"{name}.jsonl"
    env = {**os.environ, "CLOUDCHAT_STATE_DIR": str(tmp / name),
           "CLOUDCHAT_CONFIG_DIR": str(tmp / name / "cfg"), "CLOUDCHAT_NO_KEYRING": "1"}
    sandbox = subprocess.Popen(
        [*cloudchat(), "sandbox", "--port", "0", "-q", "--rate-limit", str(args.limit),
         "--rate-window", str(args.window), "--record", str(record)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = sandbox.stdout.readline().rsplit(" ", 1)[1].strip()
    env.update(CLOUDCHAT_BASE_URL=url, CLOUDCHAT_API_KEY=f"sk_test_bench_{name}_0000000000",
               CLOUDCHAT_RATE_LIMIT=str(args.limit), CLOUDCHAT_RATE_WINDOW=str(args.window),
               CLOUDCHAT_RATE_MARGIN=str(MARGIN))
    csv_path = make_csv(tmp / f"{name}.csv", args.rows)
    plan = json.loads(subprocess.run(
        [*cloudchat(), "broadcast", str(csv_path), "-t", "Halo {name}", "--dry-run", "--json",
         "--rate", args.rate, "--spacing", spacing, "--preview", "0"],
        env=env, capture_output=True, text=True, check=True).stdout)["schedule"]
    send_walls: list[float] = []
    done = threading.Event()

    def other_traffic() -> None:
        while not done.wait(3.0):
            started = time.monotonic()
            subprocess.run([*cloudchat(), "send", "6281299999991", "OTP 123456", "-q"],
                           env=env, stdin=subprocess.DEVNULL, capture_output=True)
            send_walls.append(time.monotonic() - started)

    helper = threading.Thread(target=other_traffic, daemon=True)
    if sends:
        helper.start()
    started = time.monotonic()
    proc = subprocess.run(
        [*cloudchat(), "broadcast", str(csv_path), "-t", "Halo {name}", "--yes", "-q",
         "--rate", args.rate, "--spacing", spacing], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True)
    wall = time.monotonic() - started
    done.set()
    if sends:
        helper.join()
    sandbox.terminate()
    sandbox.wait()
    records = [json.loads(line) for line in record.read_text().splitlines()]
    mine = sorted(r["ts"] for r in records
                  if r["status"] == 201 and r["request"]["text"].startswith("Halo"))
    gaps = [b - a for a, b in zip(mine, mine[1:], strict=False)]
    # Steady rate after the first window's worth (as bench/broadcast.py): a burst's first
    # window would otherwise count as free.
    share = plan["share"]["requests"]
    if len(mine) > share + 1:
        achieved = (len(mine) - share) / (mine[-1] - mine[share - 1])
    else:  # a toy run shorter than one window's worth
        achieved = (len(mine) - 1) / (mine[-1] - mine[0])
    return {
        "name": name, "exit": proc.returncode, "sent": len(mine), "wall": wall,
        "429s": sum(1 for r in records if r["status"] == 429),
        "target": plan["share"]["requests"] / args.window,
        "sustained": plan["sustained_per_minute"] / 60, "spacing": plan["spacing"]["seconds"],
        "achieved": achieved, "min": min(gaps), "p50": statistics.median(gaps), "max": max(gaps),
        "eta": plan["eta_seconds"], "sends": send_walls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--rate", default="120/min")
    args = parser.parse_args()
    runs = [("auto", "auto", True), ("burst", "burst", False), ("fixed-1s", "1", False)]
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as name:
        threads = [threading.Thread(target=lambda r=r: results.append(
            scenario(r[0], r[1], args, Path(name), sends=r[2]))) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    results.sort(key=lambda r: [x[0] for x in runs].index(r["name"]))
    print(f"Paced broadcast: App {args.limit} per {args.window:g} s, --rate {args.rate}, "
          f"{args.rows} rows, margin {MARGIN} s\n")
    print("| spacing | sent | 429s | target/s | steady achieved/s | achieved / target "
          "| achieved / schedule | inter-arrival min / p50 / max | ETA planned | wall | exit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} ({r['spacing']:g} s) | {r['sent']} | {r['429s']} "
              f"| {r['target']:.3f} | {r['achieved']:.3f} | {r['achieved'] / r['target']:.3f} "
              f"| {r['achieved'] / r['sustained']:.3f} "
              f"| {r['min']:.3f} / {r['p50']:.3f} / {r['max']:.3f} s "
              f"| {r['eta']:.0f} s | {r['wall']:.0f} s | {r['exit']} |")
    sends = next(r["sends"] for r in results if r["name"] == "auto")
    if sends:
        print(f"\n`cloudchat send` during the auto broadcast: {len(sends)} sends, wall time "
              f"(process start to exit) median {statistics.median(sends):.2f} s, "
              f"max {max(sends):.2f} s")


if __name__ == "__main__":
    main()
