#!/usr/bin/env python3
"""Webhook listener benchmark: acknowledgement latency and throughput with --save.

Starts `cloudchat webhook listen --save DIR` and sends signed, distinct events over loopback:
one sender; 50 concurrent senders opening one connection per delivery (as CloudChat does);
50 keep-alive senders, each sending its deliveries one after another on one connection.
Latency is measured per delivery from connect (or, on a kept-alive connection, from the
first byte sent) to the last byte of the answer. Requests are built before the clock starts.
The CPU time per delivery of the listener and of this script's senders (user + system) is
steadier than the throughput on a shared machine. The listener's Python runs on one event loop
(one GIL), so its CPU per delivery bounds its throughput: 1 s / (CPU per delivery) at one
fully used CPU, the "listener CPU use" column showing how close a row came.

Events are saved on the disk under --dir (default /var/tmp, not a tmpfs /tmp), each run in
its own directory, all removed only at the end. On ext4 without a journal (the machine this
was written on) creating a file right after thousands were deleted nearby costs ~0.8 ms of
kernel CPU instead of ~20 us (the inode allocator skips inodes freed in the last minutes), so
one run's cleanup would be billed to the next; the work directory is marked as a top of
directory hierarchy (chattr +T) so that each run's files go to their own block group. A probe
of the disk (file creation, fsync, syncfs) is printed at the start and the end of the run.

    python bench/listener.py                           # 2,000 deliveries per row
    python bench/listener.py --deliveries 500          # quicker
    python bench/listener.py --baseline-rev d28500d    # the same rows for another commit
    python bench/listener.py --baseline /tmp/old-code  # ... or checkout, interleaved round
                                                       # by round (repeatable)
    python bench/listener.py --dedupe-store redis://127.0.0.1:6379/15
                                # rows with and without shared dedupe, interleaved (the
                                # store's keys are distinct per run and expire in 7 days:
                                # use a scratch Redis or database)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

SECRET = "whsec_bench_0123456789abcdef"
RUN = os.urandom(4).hex()  # ids differ between invocations (a shared dedupe store remembers)
REPO = Path(__file__).resolve().parent.parent


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
        if b"\r\nconnection: close" in head.lower():
            raise NoKeepAlive
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


class NoKeepAlive(Exception):
    """The listener answers ``Connection: close`` (code from before keep-alive)."""


def start(events: Path, code: Path | None, save: bool = True, store: str | None = None
          ) -> tuple[subprocess.Popen, str, int]:
    home = events.with_name(events.name + "-home")
    env = {**os.environ, "CLOUDCHAT_WEBHOOK_SECRET": SECRET, "CLOUDCHAT_NO_KEYRING": "1",
           "CLOUDCHAT_CONFIG_DIR": str(home / "cfg"), "CLOUDCHAT_STATE_DIR": str(home / "state"),
           "CLOUDCHAT_WEBHOOK_DEDUPE_STORE": store or "local"}
    # `python -m` imports from its working directory first: run in the code's own directory
    code = code or REPO
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudchat_cli", "webhook", "listen", "--port", "0",
         "--path", "/webhook", "--json", *(["--save", str(events)] if save else [])],
        env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
    cpu_before, own_before = cpu_seconds(pid), time.process_time()
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    refused: list[BaseException] = []
    requests = iter([build(host, offset + i, close=not keep_alive) for i in range(total)])

    def sender() -> None:
        conn = None
        try:
            conn = KeptAlive(host, port) if keep_alive else None
            for request in requests:
                elapsed, status = conn.post(request) if conn else post(host, port, request)
                with lock:
                    latencies.append(elapsed)
                    statuses.append(status)
        except NoKeepAlive as exc:
            refused.append(exc)
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
    mode = "keep-alive" if keep_alive else "per delivery"
    if refused:
        return {"senders": senders, "mode": mode, "na": "closes after each answer"}
    latencies.sort()
    return {"senders": senders, "mode": mode,
            "deliveries": len(latencies), "ok": statuses.count(200),
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
            "max": latencies[-1] * 1000, "throughput": len(latencies) / wall,
            "cpu_us": (cpu_seconds(pid) - cpu_before) / len(latencies) * 1e6,
            "client_us": (time.process_time() - own_before) / len(latencies) * 1e6}


def measure(deliveries: int, senders: int, *, one: int = 200, work: Path | None = None,
            code: Path | None = None, offset: int = 0, save: bool = True,
            store: str | None = None) -> list[dict]:
    """Run one listener; rows for 1 sender, ``senders`` per delivery, ``senders`` kept alive.
    Its events are kept in ``work`` (the caller removes it), or else removed at once."""
    with contextlib.ExitStack() as cleanup:
        if work is None:
            work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(dir=default_dir())))
        events = Path(tempfile.mkdtemp(prefix="events-", dir=work))  # its own block group (+T)
        proc, host, port = start(events, code, save, store)
        try:
            return [run(host, port, 1, one, offset + 10**6, False, proc.pid),
                    run(host, port, senders, deliveries, offset, False, proc.pid),
                    run(host, port, senders, deliveries, offset + 2 * 10**6, True, proc.pid)]
        finally:
            proc.terminate()
            proc.wait()


def default_dir() -> Path:
    """Where the events go: on disk (/var/tmp; /tmp may be a tmpfs)."""
    return Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())


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


# --- the disk ----------------------------------------------------------------------------------


def filesystem(path: Path) -> str:
    """The filesystem type and device holding ``path`` (from /proc/mounts), for the header."""
    best = ("", "?", "?")
    with contextlib.suppress(OSError), open("/proc/mounts") as fh:
        for line in fh:
            device, point, kind = line.split()[:3]
            if str(path).startswith(point.rstrip("/") + "/") and len(point) > len(best[0]):
                best = (point, kind, device)
    return f"{best[1]} on {best[2]}"


def _syncfs():
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


def probe_disk(work: Path) -> str:
    """What the disk under ``work`` costs now: a file created and written (CPU), a file and
    its directory entry fsynced (p50/p99), and 50 new files made durable by an fsync each or
    by one syncfs (median of 20 batches): the floor under every --save figure."""
    base = Path(tempfile.mkdtemp(prefix="probe-", dir=work))
    data = b"x" * 700 + b"\n"
    dfd = os.open(base, os.O_RDONLY)
    counter = iter(range(10**9))

    def new_file() -> int:
        fd = os.open(base / f"f{next(counter)}", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, data)
        return fd

    try:
        cpu = time.process_time()
        for _ in range(300):
            os.close(new_file())
        create = (time.process_time() - cpu) / 300 * 1e6
        single = []
        for _ in range(200):
            fd = new_file()
            t = time.perf_counter()
            os.fsync(fd)
            os.fsync(dfd)
            single.append(time.perf_counter() - t)
            os.close(fd)
        single.sort()
        syncfs = _syncfs()
        each, one = [], []
        for _ in range(20):
            for way, out in (("fsync", each), ("syncfs", one)):
                if way == "syncfs" and syncfs is None:
                    continue
                fds = [new_file() for _ in range(50)]
                t = time.perf_counter()
                if way == "fsync":
                    for fd in fds:
                        os.fsync(fd)
                    os.fsync(dfd)
                else:
                    syncfs(dfd)
                out.append(time.perf_counter() - t)
                for fd in fds:
                    os.close(fd)
    finally:
        os.close(dfd)
        shutil.rmtree(base, ignore_errors=True)
    text = (f"create+write {create:.0f} µs CPU/file; fsync file+directory p50 "
            f"{single[100] * 1000:.2f} ms, p99 {single[197] * 1000:.2f} ms; 50 files durable: "
            f"fsync each {statistics.median(each) * 1000:.2f} ms")
    if one:
        text += f", one syncfs {statistics.median(one) * 1000:.2f} ms"
    return text


def top_of_hierarchy(directory: Path) -> bool:
    """Ask ext4 to spread the subdirectories of ``directory`` over block groups (chattr +T)."""
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+T", str(directory)], capture_output=True)
    return done.returncode == 0


def checkout(rev: str, into: Path) -> Path:
    """``cloudchat_cli`` as of ``rev`` (git archive), to run as a baseline."""
    target = into / f"rev-{rev.replace('/', '_')}"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev,
                              "cloudchat_cli"], capture_output=True, check=True).stdout
    tar = target / "code.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as tf:
        tf.extractall(target, filter="data")
    tar.unlink()
    return target


# --- the table ---------------------------------------------------------------------------------


def _median_row(rows: list[dict]) -> dict:
    """The round with the median throughput (its latencies with it: they come together)."""
    rows = [r for r in rows if "na" not in r] or rows
    return sorted(rows, key=lambda r: r.get("throughput", 0))[len(rows) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--one", type=int, default=1000, help="deliveries of the one sender "
                        "(its p99 is the 10th worst of 1,000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per code")
    parser.add_argument("--no-save", action="store_true", help="without --save: the HTTP "
                        "path alone, no disk")
    parser.add_argument("--dir", type=Path, default=default_dir(),
                        help="where the events are saved (default: %(default)s)")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="a checkout of other code to compare (repeatable)")
    parser.add_argument("--baseline-rev", action="append", default=[], metavar="REV",
                        help="a commit of this repository to compare (repeatable)")
    parser.add_argument("--dedupe-store", metavar="URL", help="also run this code with "
                        "--dedupe-store URL (a scratch Redis), interleaved with the rows without")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cloudchat-bench-", dir=args.dir))
    try:
        spread = top_of_hierarchy(work)
        codes: list[tuple[str, Path | None]] = [("this", None)]
        codes += [(f"{rev}", checkout(rev, work)) for rev in args.baseline_rev]
        codes += [(path.name, path) for path in args.baseline]
        if args.dedupe_store:
            codes.append(("this + dedupe", None))
        probe_before = None if args.no_save else probe_disk(work)
        load_before, pressure_before = os.getloadavg(), pressure()
        results: dict[str, list[list[dict]]] = {name: [] for name, _ in codes}
        for r in range(args.rounds):
            # interleaved, so drift in the machine's load hits every code, and in alternating
            # order (ABBA), so none always follows another's run
            for name, code in (codes if r % 2 == 0 else codes[::-1]):
                if hasattr(os, "sync"):
                    os.sync()  # the previous run's writes are not billed to this one
                results[name].append(measure(
                    args.deliveries, args.senders, one=args.one, work=work, code=code,
                    offset=r * 10**7, save=not args.no_save,
                    store=args.dedupe_store if name == "this + dedupe" else None))
        load_after, pressure_after = os.getloadavg(), pressure()
        probe_after = None if args.no_save else probe_disk(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, codes, results, (load_before, pressure_before, load_after, pressure_after),
           (work, spread, probe_before, probe_after))


def report(args, codes, results, machine, disk) -> None:
    load_before, pressure_before, load_after, pressure_after = machine
    work, spread, probe_before, probe_after = disk
    what = "without --save" if args.no_save else "with --save (durable before each 200)"
    print(f"Listener {what}, deliveries over loopback; median round of {args.rounds}; load "
          f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} "
          f"CPUs); pressure (10 s) {pressure_before} before, {pressure_after} after")
    if probe_before:
        print(f"Events in {args.dir} ({filesystem(work)}; each run in its own directory"
              f"{', spread over block groups' if spread else ''})")
        print(f"Disk before: {probe_before}")
        print(f"Disk after:  {probe_after}")
    print()
    print("| code | senders | connections | deliveries | 200s | p50 ack | p99 ack | max "
          "| throughput | CPU per delivery: listener + senders | listener CPU use | target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    targets = {(1, "per delivery"): "p99 < 2 ms", (args.senders, "per delivery"): "p99 < 50 ms",
               (args.senders, "keep-alive"): "p99 < 25 ms, ≥ 2× per delivery"}
    medians: dict[tuple[str, str, int], dict] = {}
    for name, _ in codes:
        rounds = results[name]
        for i in range(len(rounds[0])):
            r = _median_row([one[i] for one in rounds])
            medians[(name, r["mode"], r["senders"])] = r
            target = targets.get((r["senders"], r["mode"]), "")
            if "na" in r:
                print(f"| {name} | {r['senders']} | {r['mode']} | n/a ({r['na']}) "
                      f"| | | | | | | | {target} |")
                continue
            print(f"| {name} | {r['senders']} | {r['mode']} | {r['deliveries']} | {r['ok']} "
                  f"| {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.1f} ms "
                  f"| {r['throughput']:.0f}/s | {r['cpu_us']:.0f} + {r['client_us']:.0f} µs "
                  f"| {r['cpu_us'] * r['throughput'] / 1e6:.2f} CPU | {target} |")
    print()
    for name, _ in codes:
        a = medians[(name, "per delivery", args.senders)]
        b = medians[(name, "keep-alive", args.senders)]
        if "na" in b:
            continue
        each = [one[2]["throughput"] / one[1]["throughput"] for one in results[name]
                if "na" not in one[2]]
        print(f"{name}: keep-alive / per delivery throughput "
              f"{b['throughput'] / a['throughput']:.2f}× (rounds: "
              f"{', '.join(f'{x:.2f}' for x in each)}); CPU per delivery, per delivery / "
              f"keep-alive: listener {a['cpu_us'] / b['cpu_us']:.2f}×, listener + senders "
              f"{(a['cpu_us'] + a['client_us']) / (b['cpu_us'] + b['client_us']):.2f}×; "
              f"keep-alive ceiling with one event loop: {args.senders} senders served once "
              f"every {args.senders} × {b['cpu_us']:.0f} µs = "
              f"{1e6 / b['cpu_us']:.0f}/s at 1.00 CPU")
    if args.dedupe_store:
        for mode in ("per delivery", "keep-alive"):
            plain, shared = (medians[(n, mode, args.senders)] for n in ("this", "this + dedupe"))
            print(f"with / without --dedupe-store, {args.senders} senders {mode}: throughput "
                  f"{shared['throughput'] / plain['throughput']:.2f}×, p50 "
                  f"{shared['p50'] - plain['p50']:+.2f} ms, listener CPU per delivery "
                  f"{shared['cpu_us'] - plain['cpu_us']:+.0f} µs")
    this_a = medians[("this", "per delivery", args.senders)]
    for name, code in codes:
        if code is None:
            continue
        base_a = medians[(name, "per delivery", args.senders)]
        each = [t[1]["throughput"] / b[1]["throughput"]
                for t, b in zip(results["this"], results[name], strict=True)]
        cpu = [t[1]["cpu_us"] / b[1]["cpu_us"]
               for t, b in zip(results["this"], results[name], strict=True) if b[1]["cpu_us"]]
        print(f"this / {name}, {args.senders} senders per delivery: throughput "
              f"{this_a['throughput'] / base_a['throughput']:.3f} between the median rounds, "
              f"median of the per-round ratios {statistics.median(each):.3f} (rounds: "
              f"{', '.join(f'{x:.3f}' for x in each)})"
              + (f"; listener CPU per delivery {statistics.median(cpu):.3f}" if cpu else ""))


if __name__ == "__main__":
    main()
