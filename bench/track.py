#!/usr/bin/env python3
"""How long ``broadcast track`` takes for a big broadcast, and how much memory it needs.

    python bench/track.py                    # 100,000 rows, 300,000 saved events; and 10,000
    python bench/track.py --rows 20000 --rows 100000

Setup (not timed): a journal with N rows all accepted (state ``sent``, a message id each) and a
directory of saved events in the listener's own file format (``EventStore.pending``): per row
sent → delivered → read, every 20th row sent → failed, plus events of another broadcast, for
3 N events in all. Then the real ``cloudchat broadcast track --json`` runs, each step its own
process (its peak RSS is measured by ``wait4``):

* first: every file is new;
* again: nothing new (lists the directory, finds every file already read);
* incremental: 1 % more files (read events of another broadcast), then track again.

Memory must stay flat: SQLite does the join; events go through a temporary table in batches.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = 1_800_000_000


def make_journal(path: Path, rows: int) -> None:
    from cloudchat_cli.services.broadcast.journal import Journal

    Journal(path).close()  # the real schema, at the current version
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO rows (row, recipient, channel, payload, state, message_id, http_status, "
        "updated) VALUES (?, ?, 'whatsapp', '{}', 'sent', ?, 201, ?)",
        ((i + 2, f"62812{i:07d}", f"msg_{i:012x}", T0) for i in range(rows)))
    db.commit()
    db.close()


def event(store, n: int, mid: str, status: str, ts: float) -> None:
    data = {"message_id": mid, "status": status}
    if status == "failed":
        data["error"] = ["unreachable", "blocked", "invalid number"][n % 3]
    body = json.dumps({"event": "message.status", "id": f"evt_{n:012x}", "timestamp": ts,
                       "channel": "whatsapp", "session_id": "s", "data": data}).encode()
    item = store.pending(f"evt_{n:012x}", body, {"id": f"evt_{n:012x}",
                                                 "received_at": ts + 0.1, "headers": {}})
    item.path.write_bytes(item.data)  # the listener's format; no fsync needed here


def make_events(directory: Path, rows: int, total: int, start: int = 0) -> int:
    from cloudchat_cli.services.webhooks.store import EventStore

    store = EventStore(directory)
    n = start
    if total:
        for i in range(rows):
            steps = ("sent", "failed") if i % 20 == 0 else ("sent", "delivered", "read")
            for k, status in enumerate(steps):
                event(store, n, f"msg_{i:012x}", status, T0 + 1 + k * (1 + i % 7))
                n += 1
    while n - start < total or (not total and n - start < rows // 100):
        event(store, n, f"msg_other_{n}", "read", T0 + 5)
        n += 1
    return n


def run_track(journal: Path, events: Path) -> dict:
    env = {**os.environ, "CLOUDCHAT_NO_KEYRING": "1"}
    exe = shutil.which("cloudchat") or str(Path(sys.executable).with_name("cloudchat"))
    started = time.perf_counter()
    proc = subprocess.Popen([exe, "broadcast", "track", "--journal", str(journal), "--events",
                             str(events), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"track failed ({proc.returncode}): {err.decode()}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024, "summary": json.loads(out)}


def measure(rows: int, tmp: Path) -> list[dict]:
    base = tmp / f"r{rows}"
    events = base / "events"
    base.mkdir()
    journal = base / "j.sqlite3"
    make_journal(journal, rows)
    n = make_events(events, rows, 3 * rows)
    results = []
    first = run_track(journal, events)
    results.append({"rows": rows, "step": f"first: {n:,} new files", **first})
    results.append({"rows": rows, "step": "again: nothing new", **run_track(journal, events)})
    added = make_events(events, rows, 0, start=n) - n
    results.append({"rows": rows, "step": f"incremental: {added:,} new files",
                    **run_track(journal, events)})
    s = first["summary"]
    failed = (rows + 19) // 20
    expected = {"accepted": rows, "read": rows - failed, "failed": failed, "no_status": 0}
    if {k: s[k] for k in expected} != expected:
        sys.exit(f"wrong counts: {s}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, action="append")
    args = parser.parse_args()
    sizes = args.rows or [10_000, 100_000]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        rows = [r for size in sizes for r in measure(size, Path(tmp))]
    print("| rows | step | wall s | CPU s | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rows']:,} | {r['step']} | {r['seconds']:.2f} | {r['cpu']:.2f} | "
              f"{r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
