"""How ``webhook listen`` shows deliveries: a readable line each, or JSON lines with --json."""

from __future__ import annotations

import json
import sys
import threading
import time

from cloudchat_cli.core.errorbody import one_line
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
                why = f"{d.reason}: {d.detail}" if d.detail else d.reason
                console.err().print(
                    f"{stamp} [red]{d.status} rejected[/red]: {console.escape(one_line(why, 300))}")
                return
            if d.outcome == "duplicate":
                self.duplicates += 1
            else:
                self.accepted += 1
            if self.json_out:
                line = {"received_at": d.received_at, "status": d.outcome, "id": d.event_id,
                        "verified": d.verified, "saved": str(d.saved) if d.saved else None,
                        "event": d.event}
                sys.stdout.write(json_line(line) + "\n")
                sys.stdout.flush()
                return
            mark = ("[yellow]dup[/yellow]" if d.outcome == "duplicate"
                    else "[green]✓[/green]" if d.verified else "[yellow]?[/yellow]")
            text = events.summary_line(d.event)
            if d.outcome == "duplicate":
                text += "  (duplicate: retry of an event already received)"
            console.out().print(f"{stamp} {mark} {console.escape(text)}")


def json_line(record: dict) -> str:
    """One line of strict JSON that any terminal or pipe can take.

    Non-ASCII text stays readable unless it holds a lone surrogate (JSON ``"\\ud800"``,
    from a truncated emoji), which cannot be written as UTF-8: then the line is ASCII with
    ``\\u`` escapes, which keep it exact. An event that strict JSON cannot hold (a number
    too large for a float, nesting deeper than the encoder goes) is shown as its summary;
    the exact body is what ``--save`` keeps.
    """
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError):
        event = record.get("event")
        record = {**record, "event": events.summary(event) if isinstance(event, dict) else None,
                  "event_truncated": True}  # summary() never raises: short strings only
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, allow_nan=False)
    return text
