#!/usr/bin/env python3
"""The forward queue under an app outage: every event delivered, once, in order — how fast?

Starts `cloudchat webhook listen --save DIR --forward-to URL` while nothing listens at URL (the
app is down), sends N signed events spread over the outage (each must get its 200), then starts
the app — a receiver in this process that checks every signature with hmac — and waits until it
has every event. Reports: events acknowledged, delivered, duplicates, order kept, signatures
valid, the wait from "app up" to the first delivery (the backoff the head event was in), and
the time to drain.

    python bench/forward_outage.py                          # 1,000 events, 60 s outage
    python bench/forward_outage.py --events 1000 --outage 600   # the 10-minute outage

The listener runs with its default policy (2, 4, 8 s, then doubling up to 1 h) unless
--delays/--max-delay say otherwise; the report also states, from the policy alone, the
longest wait after an outage of each length (the next attempt of the head event).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SECRET = "whsec_bench_outage_0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cloudchat() -> str:
    exe = shutil.which("cloudchat") or str(Path(sys.executable).with_name("cloudchat"))
    if not Path(exe).exists():
        sys.exit("install the CLI first: pip install -e .")
    return exe


class App:
    """The user's app: verifies each signature, records the ids in arrival order."""

    def __init__(self, port: int):
        self.ids: list[str] = []
        self.invalid = 0
        self.first_at: float | None = None
        self.done = threading.Event()
        self.expected = 0
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                good = hmac.compare_digest(
                    hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
                    self.headers.get("X-CloudChat-Signature", ""))
                with lock:
                    if app.first_at is None:
                        app.first_at = time.monotonic()
                    if good:
                        app.ids.append(json.loads(body)["id"])
                    else:
                        app.invalid += 1
                    if len(app.ids) >= app.expected:
                        app.done.set()
                self.send_response(200 if good else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

        lock = threading.Lock()

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send(port: int, i: int) -> int:
    body = json.dumps({"event": "message.received", "id": f"evt_out_{i:06d}",
                       "timestamp": int(time.time()), "channel": "whatsapp",
                       "data": {"from": "6281234567890", "text": f"pesan {i}"}}).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/webhook", body, {"Content-Type": "application/json",
                                                "X-CloudChat-Signature": sig})
        return conn.getresponse().status
    finally:
        conn.close()


def measure(events: int, outage: float, *, delays: str = "2,4,8", max_delay: str = "1h",
            timeout: float = 3600.0) -> dict:
    work = Path(tempfile.mkdtemp(prefix="cloudchat-outage-"))
    app_port = free_port()
    env = {**os.environ, "CLOUDCHAT_WEBHOOK_SECRET": SECRET,
           "CLOUDCHAT_STATE_DIR": str(work / "state"), "CLOUDCHAT_CONFIG_DIR": str(work / "c"),
           "CLOUDCHAT_NO_KEYRING": "1"}
    listener = subprocess.Popen(
        [cloudchat(), "webhook", "listen", "--port", "0", "--path", "/webhook", "--save",
         str(work / "events"), "--forward-to", f"http://127.0.0.1:{app_port}/hook",
         "--forward-retry-delays", delays, "--forward-max-delay", max_delay],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    app = None
    try:
        line = listener.stderr.readline()
        port = int(line.split("Listening on http://127.0.0.1:", 1)[1].split("/")[0])
        errors: list[str] = []
        threading.Thread(target=lambda: errors.extend(listener.stderr), daemon=True).start()
        started = time.monotonic()
        acked = 0
        for i in range(events):  # spread over the first 90 % of the outage
            due = started + outage * 0.9 * i / max(events, 1)
            time.sleep(max(0.0, due - time.monotonic()))
            acked += send(port, i) == 200
        time.sleep(max(0.0, started + outage - time.monotonic()))
        app = App(app_port)
        app.expected = events
        up = time.monotonic()
        finished = app.done.wait(timeout)
        drained = time.monotonic()
        time.sleep(0.5)  # let anything sent twice show up before counting
        ids = list(app.ids)
        sent = [f"evt_out_{i:06d}" for i in range(events)]
        return {
            "events": events, "outage_s": outage, "acknowledged_200": acked,
            "delivered": len(set(ids)), "duplicates": len(ids) - len(set(ids)),
            "order_kept": ids == sent, "invalid_signatures": app.invalid,
            "finished": finished,
            "first_delivery_after_up_s": round((app.first_at or drained) - up, 2),
            "time_to_drain_s": round(drained - up, 2),
            "drain_rate_per_s": round(events / max(drained - (app.first_at or up), 1e-9)),
        }
    finally:
        listener.terminate()
        listener.wait(60)
        if app is not None:
            app.stop()
        shutil.rmtree(work, ignore_errors=True)


def worst_wait(outage: float, delays=(2.0, 4.0, 8.0), cap: float = 3600.0) -> float:
    """From the policy alone: how long after the app is back the head event's next attempt
    can come, for an outage that began just as that event arrived."""
    t, n = 0.0, 0
    while t <= outage:
        n += 1
        t += delays[n - 1] if n <= len(delays) else min(cap, delays[-1] * 2 ** (n - len(delays)))
    return t - outage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the app is down")
    parser.add_argument("--delays", default="2,4,8")
    parser.add_argument("--max-delay", default="1h")
    args = parser.parse_args()
    result = measure(args.events, args.outage, delays=args.delays, max_delay=args.max_delay)
    print(json.dumps(result, indent=2))
    print("\nlongest wait after the app is back, default policy (2, 4, 8 s, doubling, 1 h cap):")
    for minutes in (1, 10, 60, 600):
        print(f"  outage {minutes:>4} min: next attempt within {worst_wait(minutes * 60):.0f} s")


if __name__ == "__main__":
    main()
