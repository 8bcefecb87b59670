"""A user's app: checks X-CloudChat-Signature with Python's own hmac, the way the vendor's
docs tell a receiver to, and records each request as one JSON line on stdout.

Usage: WEBHOOK_SECRET=… python verify_receiver.py PORT [STATUS]
PORT 0 picks a free one; STATUS (default 200) is what a valid event is answered with.
Nothing from cloudchat_cli is imported: the check is independent of ours.
"""

import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["WEBHOOK_SECRET"].encode()
STATUS = int(sys.argv[2]) if len(sys.argv) > 2 else 200


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        given = self.headers.get("X-CloudChat-Signature", "")
        valid = hmac.compare_digest(expected, given)
        event = json.loads(body) if valid else {}
        status = STATUS if valid else 401
        print(json.dumps({"id": event.get("id"), "valid": valid, "status": status,
                          "sha256": hashlib.sha256(body).hexdigest(),
                          "event_header": self.headers.get("X-CloudChat-Event")}), flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
print(f"listening on http://127.0.0.1:{server.server_address[1]}/hook", flush=True)
server.serve_forever()
