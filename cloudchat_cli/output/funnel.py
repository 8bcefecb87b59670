"""The delivery funnel of ``broadcast track``: rich bars on a terminal, plain lines when piped."""

from __future__ import annotations

from typing import Any

STAGES = (("accepted", "accepted"), ("delivered", "delivered"), ("read", "read"),
          ("failed", "failed"), ("no_status", "no status yet"))
_STYLE = {"accepted": "blue", "delivered": "cyan", "read": "green", "failed": "red",
          "no_status": "yellow"}
_TIMES = (("sent_to_delivered", "sent → delivered"), ("delivered_to_read", "delivered → read"))


def seconds(value: float | None) -> str:
    """A duration for people: 0.4 s, 12 s, 3 min 05 s, 2 h 07 min."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.1f} s"
    value = int(round(value))
    if value < 60:
        return f"{value} s"
    if value < 3600:
        return f"{value // 60} min {value % 60:02d} s"
    return f"{value // 3600} h {value % 3600 // 60:02d} min"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def _stale_text(summary: dict) -> str:
    return f"no status {seconds(summary['stale_after_s'])} after sending"


def renderable(summary: dict[str, Any]):
    """The funnel as a rich renderable (also what ``--follow`` redraws)."""
    from rich.bar import Bar
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    blocks = [("", summary)]
    if len(summary["channels"]) > 1:
        blocks += [(name, counts) for name, counts in summary["channels"].items()]
    table = Table(box=None, pad_edge=False, show_header=False, title_justify="left",
                  title=f"Delivery funnel: {summary['accepted']} accepted")
    for column in ("stage", "count", "bar", "pct"):
        table.add_column(column, justify="right" if column in ("count", "pct") else "left")
    for index, (channel, counts) in enumerate(blocks):
        if channel:
            table.add_row(Text(channel, style="bold"), "", "", "", end_section=False)
        elif index:
            table.add_row("", "", "", "")
        whole = counts["accepted"]
        for key, label in STAGES:
            table.add_row(("  " if channel else "") + label, str(counts[key]),
                          Bar(max(whole, 1), 0, counts[key], width=32, color=_STYLE[key]),
                          _pct(counts[key], whole))
    parts.append(table)
    times = Table(box=None, pad_edge=False, title="Time", title_justify="left")
    for column in ("", "median", "p90", "messages"):
        times.add_column(column, justify="left" if not column else "right")
    for key, label in _TIMES:
        t = summary["times"][key]
        times.add_row(label, seconds(t["median_s"]), seconds(t["p90_s"]), str(t["count"]))
    parts += [Text(""), times]
    if summary["failure_reasons"]:
        reasons = Table(box=None, pad_edge=False, title="Failure reasons", title_justify="left",
                        show_header=False)
        reasons.add_column("count", justify="right")
        reasons.add_column("reason")
        for item in summary["failure_reasons"]:
            reasons.add_row(str(item["count"]), escape(item["reason"]))
        parts += [Text(""), reasons]
    if summary["stale"]:
        lines = [f"[yellow]{summary['stale']} row(s) with {_stale_text(summary)}:[/yellow]"]
        lines += [f"  row {r['row']}  {escape(r['to'] or '')}  {escape(r['channel'] or '')}  "
                  f"accepted {r['accepted_at']}" for r in summary["stale_rows"]]
        if summary["stale"] > len(summary["stale_rows"]):
            lines.append(f"  … and {summary['stale'] - len(summary['stale_rows'])} more "
                         "(--report lists every row)")
        parts += [Text(""), Text.from_markup("\n".join(lines))]
    parts += [Text(""), Text(_footer(summary), style="dim")]
    return Group(*parts)


def _footer(summary: dict) -> str:
    ev = summary["events"]
    text = (f"{ev['status_events']} status events read from {ev['files']} files; "
            f"{ev['other_broadcasts']} for messages of other broadcasts ignored")
    if ev["refused_files"]:
        text += f"; {ev['refused_files']} file(s) that are not saved events skipped"
    if ev["other_event_types"]:
        text += f"; {ev['other_event_types']} other events ignored"
    if summary["not_accepted"]:
        text += f"; {summary['not_accepted']} row(s) not accepted by the API (see the report)"
    if summary["not_sent_yet"]:
        text += f"; {summary['not_sent_yet']} row(s) not sent yet"
    return text


def plain_lines(summary: dict[str, Any]) -> list[str]:
    """Stable lines for scripts and logs: ``key value`` pairs, no colour."""
    whole = summary["accepted"]
    lines = [f"{label}: {summary[key]}" + ("" if key == "accepted" else
                                           f" ({_pct(summary[key], whole)})")
             for key, label in STAGES]
    if len(summary["channels"]) > 1:
        for name, counts in summary["channels"].items():
            lines.append(f"channel {name}: " + ", ".join(
                f"{label} {counts[key]}" for key, label in STAGES))
    for key, label in _TIMES:
        t = summary["times"][key]
        lines.append(f"{label}: median {seconds(t['median_s'])}, p90 {seconds(t['p90_s'])} "
                     f"({t['count']} message(s))")
    for item in summary["failure_reasons"]:
        lines.append(f"failure reason: {item['count']} × {item['reason']}")
    if summary["stale"]:
        lines.append(f"stale: {summary['stale']} row(s) with {_stale_text(summary)}")
        lines += [f"stale row {r['row']}: {r['to']} ({r['channel']}), accepted "
                  f"{r['accepted_at']}" for r in summary["stale_rows"]]
    lines.append(_footer(summary))
    return lines


def progress_line(summary: dict[str, Any]) -> str:
    """One line per change while following without a terminal."""
    return ", ".join(f"{label} {summary[key]}" for key, label in STAGES)
