#!/usr/bin/env python3
"""How `webhook listen --save` writes events: durable saves per second, four ways.

    python bench/saves.py            # 3,000 events of ~700 bytes per row, under /var/tmp

Each way makes every event durable (file and directory entry on stable storage) before it
counts:

* thread per event: 32 threads, each saving one event at a time with its own directory fsync
  (what a thread-per-delivery server does);
* batch, fsync each: one thread saving batches of N waiting events (write all, fsync each,
  one directory fsync), without and with the writeback hint (POSIX_FADV_DONTNEED) given to the
  kernel before the first fsync, as the listener's Flusher did before syncfs;
* batch, syncfs: write all, then one syncfs(2) of the filesystem (what the Flusher does on
  Linux 5.8+).

The figures depend heavily on the disk: on the shared VM disk this was written on they varied
by 3x from one minute to the next, so compare rows from the same run. Each row writes in a
directory of its own under BENCH_DIR (default /var/tmp: /tmp may be a tmpfs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

from cloudchat_cli.services.webhooks import store as store_mod

BODY = b'{"event":"message.received","id":"evt","data":{"text":"' + b"x" * 500 + b'"}}'


def thread_per_event(directory: Path, count: int, threads: int = 32) -> float:
    store = store_mod.EventStore(directory)
    numbers = iter(range(count))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(numbers, None)
            if i is None:
                return
            store.save(f"evt_{i}", BODY, {"signature": "ab" * 32})

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return count / (time.perf_counter() - started)


def batches(directory: Path, count: int, size: int, how: str) -> float:
    store = store_mod.EventStore(directory)
    fadvise = store_mod._FADVISE if how == "hint" else None
    syncer = store_mod.SyncFs(directory) if how == "syncfs" else None
    with mock.patch.object(store_mod, "_FADVISE", fadvise):
        started = time.perf_counter()
        for first in range(0, count, size):
            batch = [store.pending(f"evt_{i}", BODY, {"signature": "ab" * 32})
                     for i in range(first, min(count, first + size))]
            store_mod.write_batch(store.dir, batch, syncer)
            assert all(item.error is None for item in batch)
        rate = count / (time.perf_counter() - started)
    if syncer is not None:
        syncer.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    rows = []
    ways = [("fsync each, no hint", "plain"), ("fsync each, with hint", "hint")]
    if store_mod.SyncFs.available():
        ways.append(("one syncfs", "syncfs"))
    where = os.environ.get("BENCH_DIR") or ("/var/tmp" if os.path.isdir("/var/tmp") else None)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        base = Path(tmp)
        rows.append(("thread per event, 32 threads", thread_per_event(base / "t", args.events)))
        for size in (1, 8, 25, 50):
            for label, how in ways:
                rows.append((f"batches of {size}, one thread, {label}",
                             batches(base / f"b{size}{how}", args.events, size, how)))
    if store_mod._FADVISE is None:
        print("(posix_fadvise is not available here: the hint rows do nothing extra)\n")
    first = rows[0][1]
    print("| how | durable saves/s | vs thread per event |")
    print("|---|---|---|")
    for label, rate in rows:
        print(f"| {label} | {rate:,.0f} | {rate / first:.2f}× |")


if __name__ == "__main__":
    main()
