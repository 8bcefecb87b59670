"""How webhook events are shown: ``listen``'s deliveries (a readable line each, or JSON lines
with --json), ``verify``'s results, and the one-line summary of an event both use."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from cloudchat_cli.core.errorbody import one_line
from cloudchat_cli.output import console


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
            text = summary_line(d.event)
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
        record = {**record, "event": summary(event) if isinstance(event, dict) else None,
                  "event_truncated": True}  # summary() never raises: short strings only
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, allow_nan=False)
    return text


# --- an event in one line ------------------------------------------------------------------


def _text(value: Any, limit: int = 80) -> str:
    if value in (None, ""):
        return ""
    try:
        return one_line(str(value), limit)
    except RecursionError:  # nested deeper than str() goes from here: parsed, not showable
        return "(deeply nested)"


def summary(event: dict[str, Any] | None) -> dict[str, str]:
    """The fields a person wants in one line: event, id, channel, from/text or id/status."""
    if event is None:
        return {}
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    out = {
        "event": _text(event.get("event"), 40),
        "id": _text(event.get("id"), 80),
        "channel": _text(event.get("channel"), 20),
    }
    if event.get("event") == "message.status":
        out["message_id"] = _text(data.get("message_id"), 80)
        out["status"] = _text(data.get("status"), 20)
        if data.get("error"):
            out["error"] = _text(data.get("error"))
    else:
        out["from"] = _text(data.get("from"), 40)
        if data.get("pushName"):
            out["name"] = _text(data.get("pushName"), 40)
        out["text"] = _text(data.get("text"))
    return {k: v for k, v in out.items() if v}


def summary_line(event: dict[str, Any] | None) -> str:
    info = summary(event)
    if not info:
        return "(not a JSON object)"
    head = f"{info.get('event', '?')} {info.get('channel', '')}".strip()
    if "status" in info or "message_id" in info:
        tail = f"{info.get('message_id', '?')} → {info.get('status', '?')}"
        if "error" in info:
            tail += f" ({info['error']})"
    else:
        who = info.get("from", "?") + (f" ({info['name']})" if "name" in info else "")
        tail = f"from {who}: {info.get('text', '')}"
    return f"{head}  {tail}  [{info.get('id', 'no id')}]"


# --- `webhook verify` ------------------------------------------------------------------------


def verify_line(result) -> str:
    """What a person reads of a verified body (a ``VerifyResult``): its event in one line."""
    if result.event is None:
        return f"(body is not JSON: {result.body_preview})" if result.body_preview else ""
    return summary_line(result.event)


def verify_json(result) -> dict[str, Any]:
    """A ``VerifyResult`` as ``webhook verify --json`` prints it."""
    return {"valid": result.valid, "reason": result.reason, "source": result.source,
            "matched_secret": None if result.matched is None else result.matched + 1,
            "event": summary(result.event) or None,
            "json": result.event is not None}
