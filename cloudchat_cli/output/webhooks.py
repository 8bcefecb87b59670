"""How ``webhook listen`` shows deliveries: a readable line each, or JSON lines with --json."""

from __future__ import annotations

import json
import sys
import threading
import time

from cloudchat_cli.output import console
from cloudchat_cli.services.webhooks import events


class DeliveryPrinter:
    def __init__(self, *, json_out: bool = False):
        self.json_out = json_out
        self.accepted = self.duplicates = self.rejected = 0
        self._lock = threading.Lock()

    def delivery(self, d) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(d.received_at))
        with self._lock:
            if d.outcome == "rejected":
                self.rejected += 1
                console.err().print(
                    f"{stamp} [red]{d.status} rejected[/red]: {console.escape(d.reason)}")
                return
            if d.outcome == "duplicate":
                self.duplicates += 1
            else:
                self.accepted += 1
            if self.json_out:
                line = {"received_at": d.received_at, "status": d.outcome, "id": d.event_id,
                        "verified": d.verified, "saved": str(d.saved) if d.saved else None,
                        "event": d.event}
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                sys.stdout.flush()
                return
            mark = ("[yellow]dup[/yellow]" if d.outcome == "duplicate"
                    else "[green]✓[/green]" if d.verified else "[yellow]?[/yellow]")
            text = events.summary_line(d.event)
            if d.outcome == "duplicate":
                text += "  (duplicate: retry of an event already received)"
            console.out().print(f"{stamp} {mark} {console.escape(text)}")
