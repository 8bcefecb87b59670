#!/usr/bin/env python3
"""How long a broadcast's history lookup takes for a big CSV, and how much memory it needs.

    python bench/history.py                 # 1,000,000 rows: an earlier run sent them all,
                                            # the new run has half of them again, half new
    python bench/history.py --rows 100000

Setup (not timed): an archived journal whose N rows were all sent, and a new journal with N
pending rows, every other one the same message as an earlier row. Then, each in a fresh process
so its peak RSS is its own:

* ingest: the archived journal read into the broadcast's history file (once per archive);
* lookup: every pending row of the new journal checked against the history, matches marked
  ``already_sent`` (one UPDATE inside SQLite: what each run does);
* set (for contrast): the same digests held in a Python set, as an in-memory approach would.

Peak RSS is the process's high-water mark (ru_maxrss) minus the one it had before the step.
CPU seconds (user + system) are shown beside wall time: on a shared machine wall time varies.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "0123456789abcdef0123"


def payload(i: int) -> dict:
    return {"channel": "whatsapp", "to": f"62812{i:07d}", "type": "text",
            "text": f"Halo Pelanggan {i}, pesanan ORD-{i} sudah dikirim"}


def make_journal(path: Path, rows: int, *, state: str, start: int, step: int) -> None:
    from cloudchat_cli.services.broadcast.history import message_digest
    from cloudchat_cli.services.broadcast.journal import Journal

    Journal(path).close()  # the real schema, at the current version
    db = sqlite3.connect(path)
    now = time.time()

    def gen():
        for row in range(rows):
            p = payload(start + row * step)
            yield (row + 2, p["to"], "whatsapp", json.dumps(p), state, now, message_digest(p))

    db.executemany("INSERT INTO rows (row, recipient, channel, payload, state, updated, digest) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", gen())
    db.commit()
    db.close()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(name: str, state_dir: Path, journals: Path) -> dict:
    """Run in a fresh process: one step, timed, with its own peak RSS."""
    os.environ["CLOUDCHAT_STATE_DIR"] = str(state_dir)
    from cloudchat_cli.services.broadcast import history as hist
    from cloudchat_cli.services.broadcast.journal import Journal

    before = peak_mb()
    cpu = time.process_time()
    started = time.perf_counter()
    if name == "ingest":
        h = hist.History(KEY, journals)
        h.sync()
        h.close()
        result = None
    elif name == "lookup":
        jr = Journal(journals / "new.sqlite3")
        with jr.attached(hist.history_path(KEY), "h") as alias:
            result = jr.withhold_sent_before(alias, apply=True)[0]
        jr.close()
    else:  # the in-memory way, for contrast
        db = sqlite3.connect(journals / f"{KEY}.done-1.sqlite3")
        seen = {d for (d,) in db.execute("SELECT digest FROM rows WHERE state = 'sent'")}
        new = sqlite3.connect(journals / "new.sqlite3")
        result = sum(1 for (d,) in new.execute("SELECT digest FROM rows") if d in seen)
    return {"step": name, "seconds": time.perf_counter() - started,
            "cpu": time.process_time() - cpu,
            "peak_mb": peak_mb() - before, "matched": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        base = Path(args.dir)
        print(json.dumps(step(args.step, base / "state", base / "state" / "broadcasts")))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base = Path(tmp)
        journals = base / "state" / "broadcasts"
        journals.mkdir(parents=True)
        os.environ["CLOUDCHAT_STATE_DIR"] = str(base / "state")
        make_journal(journals / f"{KEY}.done-1.sqlite3", args.rows, state="sent", start=0,
                     step=1)
        # every other row is an earlier message (even i), the rest are new (i beyond N)
        make_journal(journals / "new.sqlite3", args.rows, state="pending", start=0, step=2)
        sizes = {p.name: p.stat().st_size for p in journals.glob("*.sqlite3")}
        rows = []
        for name in ("ingest", "lookup", "set"):
            out = subprocess.run([sys.executable, __file__, "--step", name, "--dir", tmp],
                                 check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout))
        history_size = (journals / "history" / f"{KEY}.sqlite3").stat().st_size
    expected = (args.rows + 1) // 2
    print(f"{args.rows:,} rows; journal {sizes['new.sqlite3'] / 2**20:.0f} MB, history "
          f"{history_size / 2**20:.0f} MB\n")
    print("| step | wall s | CPU s | peak RSS growth (MB) | rows matched |")
    print("|---|---|---|---|---|")
    labels = {"ingest": "ingest an archived journal into history (once)",
              "lookup": "lookup: withhold rows already sent (every run)",
              "set": "for contrast: a Python set of the digests"}
    for r in rows:
        matched = "" if r["matched"] is None else f"{r['matched']:,}"
        print(f"| {labels[r['step']]} | {r['seconds']:.2f} | {r['cpu']:.2f} | "
              f"{r['peak_mb']:.1f} | {matched} |")
        if r["matched"] is not None and r["matched"] != expected:
            sys.exit(f"{r['step']} matched {r['matched']} rows, expected {expected}")


if __name__ == "__main__":
    main()
