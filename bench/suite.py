#!/usr/bin/env python3
"""The benchmark suite behind `bench/run`: one markdown table, loopback only, a few minutes.

Start-up and one `send` round trip are medians of repeated runs, compared in the same run with
`python -c "import typer"`, httpie and curl sending the same body to the same sandbox. The
throttle, broadcast and listener rows come from bench/throttle.py, bench/broadcast.py and
bench/listener.py in their quick modes (run those alone for the full-size figures).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import broadcast as bench_broadcast  # noqa: E402
import listener as bench_listener  # noqa: E402
import throttle as bench_throttle  # noqa: E402

KEY = "sk_test_bench_suite_000000000000"
BODY = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "Halo"}


def median_ms(cmd: list[str], env: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")
    return statistics.median(times) * 1000


def row(rows: list, what: str, figure: str, comparison: str) -> None:
    rows.append((what, figure, comparison))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--skip-rates", action="store_true", help="only start-up and send")
    args = parser.parse_args()
    py = sys.executable
    cloudchat = shutil.which("cloudchat", path=str(Path(py).parent)) or "cloudchat"
    http = shutil.which("http", path=str(Path(py).parent)) or shutil.which("http")
    curl = shutil.which("curl")
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CLOUDCHAT_CONFIG_DIR": f"{tmp}/cfg", "CLOUDCHAT_STATE_DIR":
               f"{tmp}/state", "CLOUDCHAT_NO_KEYRING": "1"}
        # Measure an installed tool as users run it: with compiled bytecode. (An editable
        # install under PYTHONDONTWRITEBYTECODE=1 would recompile our sources on every run.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([py, "-m", "compileall", "-q", str(HERE.parent / "cloudchat_cli")],
                       env=env, check=True)
        typer_ms = median_ms([py, "-c", "import typer"], env, args.runs)
        for label, cmd in (("cloudchat --version", [cloudchat, "--version"]),
                           ("cloudchat --help", [cloudchat, "--help"])):
            ms = median_ms(cmd, env, args.runs)
            target = " (target ≤ 1.3×)" if "version" in label else ""
            row(rows, label, f"{ms:.0f} ms",
                f"{ms / typer_ms:.2f}× `python -c \"import typer\"` ({typer_ms:.0f} ms){target}")
        sandbox = subprocess.Popen(
            [cloudchat, "sandbox", "--port", "0", "-q", "--rate-limit", "1000000",
             "--rate-window", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        url = sandbox.stdout.readline().rsplit(" ", 1)[1].strip() + "/messages"
        try:
            senv = {**env, "CLOUDCHAT_BASE_URL": url.rsplit("/messages", 1)[0],
                    "CLOUDCHAT_API_KEY": KEY, "CLOUDCHAT_RATE_LIMIT": "1000000",
                    "CLOUDCHAT_RATE_WINDOW": "1", "CLOUDCHAT_RATE_MARGIN": "0"}
            ours = median_ms([cloudchat, "send", "6281234567890", "Halo", "-q"], senv, args.runs)
            compare = []
            if http:
                httpie = median_ms([http, "--ignore-stdin", "-q", "POST", url,
                                    f"Authorization:Bearer {KEY}", "channel=whatsapp",
                                    "to=6281234567890", "type=text", "text=Halo"], env, args.runs)
                compare.append(f"{ours / httpie:.2f}× httpie ({httpie:.0f} ms; target ≤ 0.5×)")
            if curl:
                curl_ms = median_ms([curl, "-sS", "-o", "/dev/null", "-X", "POST", url, "-H",
                                     f"Authorization: Bearer {KEY}", "-H",
                                     "Content-Type: application/json", "-d", json.dumps(BODY)],
                                    env, args.runs)
                compare.append(f"{ours / curl_ms:.1f}× curl ({curl_ms:.0f} ms)")
            row(rows, "`send` round trip to the local sandbox", f"{ours:.0f} ms",
                "; ".join(compare) or "httpie and curl not found")
        finally:
            sandbox.terminate()
            sandbox.wait()
        if not args.skip_rates:
            rates(rows, Path(tmp))
    print("| command | figure | comparison |")
    print("|---|---|---|")
    for what, figure, comparison in rows:
        print(f"| {what} | {figure} | {comparison} |")


def rates(rows: list, tmp: Path) -> None:
    limit, window, windows = 20, 5.0, 3
    for procs, latency in ((1, 0.0), (4, 0.0), (4, 2.0)):
        r = bench_throttle.scenario(procs, latency, limit, window, windows, tmp)
        row(rows, f"throttle, {procs} process(es), latency {latency:g} s",
            f"{r['fraction']:.3f} of N/W, {r['429s']} × 429",
            f"design ceiling {r['ceiling']:.3f} (N={limit}/W={window:g} s); "
            f"{r['fraction'] / r['ceiling']:.3f} of it")
    for latency in (0.0, 1.0):
        r = bench_broadcast.rate_scenario(latency, limit, window, windows, tmp)
        row(rows, f"broadcast {limit * windows} rows, latency {latency:g} s",
            f"{r['fraction']:.3f} of N/W, {r['429s']} × 429",
            f"{r['fraction'] / r['ceiling']:.3f} of the design ceiling; "
            f"{r['cpu_ms']:.1f} ms CPU per message")
    for count in (10_000, 100_000):
        r = bench_broadcast.rss_scenario(count, tmp)
        row(rows, f"broadcast preflight, {count:,} rows", f"{r['rss']:.0f} MiB peak RSS",
            f"{r['wall']:.1f} s; target flat and < 80 MB (1M rows: `python bench/broadcast.py`)")
    for r in bench_listener.measure(500, 50):
        row(rows, f"webhook listen --save, {r['senders']} sender(s), {r['mode']}",
            f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms",
            f"{r['throughput']:.0f} deliveries/s; target p99 < "
            f"{2 if r['senders'] == 1 else 25 if r['mode'] == 'keep-alive' else 50} ms")


if __name__ == "__main__":
    main()
