"""``cloudchat limits``: the key's current rate-limit window, as every process sharing it sees it
(this machine's, or every machine's when ``rate_store`` is Redis)."""

from __future__ import annotations

import typer

from cloudchat_cli.commands.options import json_option
from cloudchat_cli.output import console
from cloudchat_cli.output.result import emit


def limits(ctx: typer.Context, json_out: bool = json_option()) -> None:
    """Show the key's rate-limit window: used and free slots, next free slot, 429 block."""
    session = ctx.obj
    cfg = session.settings()
    key = session.api_key()
    throttle = session.throttle(key.value)
    state = throttle.state()
    now = throttle.clock()
    data = {
        "limit": state.limit,
        "window": cfg.rate_window,
        "used": state.used,
        "free": state.free,
        "in_flight": state.in_flight,
        "next_free_in": round(max(0.0, state.next_free_at - now), 3)
        if state.next_free_at
        else 0.0,
        "blocked_for": round(max(0.0, state.blocked_until - now), 3)
        if state.blocked_until
        else 0.0,
        "pacing": state.pacing,
        "key": key.masked,
        "store": cfg.source("rate_store").shown,
        "shared_with": throttle.store.where,
    }
    emit(data, json_out=json_out, human=_show)


def _show(data: dict) -> None:
    out = console.out()
    out.print(
        f"[bold]{data['used']}[/bold] of {data['limit']} slots used in the last "
        f"{data['window']:g} s window ({data['in_flight']} in flight), {data['free']} free"
    )
    out.print(f"window shared by {console.escape(data['shared_with'])}")
    if data["next_free_in"]:
        out.print(f"next slot frees in {data['next_free_in']:.1f} s")
    if data["blocked_for"]:
        out.print(f"[red]blocked by a 429[/red] for another {data['blocked_for']:.1f} s")
    if data["pacing"]:
        out.print("even pacing is on (429s kept coming although the window was kept: the key is "
                  "probably also used by another machine or the App's own backend)")


app = typer.Typer()
app.command("limits")(limits)
