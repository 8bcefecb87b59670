"""``webhook replay``: re-post saved events byte-exact, with their original CloudChat headers.

The body is the exact bytes saved and the signature the one CloudChat sent, so the app's own
HMAC check accepts a replayed event as it would the original. Events go in arrival order, each
with ``trigger``'s retry policy (5 s per attempt, retries at 2, 4, 8 s on 5xx or no answer);
the first one that still fails stops the replay, so nothing overtakes it. What was delivered
is marked in the directory's forward queue, so a listener (or a second replay) does not send it
again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.webhooks.delivery import RETRY_DELAYS, Attempt, deliver
from cloudchat_cli.services.webhooks.queue import DELIVERED, ForwardQueue
from cloudchat_cli.services.webhooks.store import EventStore, SavedEvent, original_headers


@dataclass
class ReplayResult:
    delivered: list[SavedEvent] = field(default_factory=list)
    failed: SavedEvent | None = None
    attempts: list[Attempt] = field(default_factory=list)  # of the failed event
    left: int = 0  # selected events not sent after the failure
    unreadable: list[str] = field(default_factory=list)


def select(directory: Path, *, include_delivered: bool = False, since: float | None = None,
           ids: list[str] | None = None) -> tuple[list[SavedEvent], list[str]]:
    """The saved events to replay, oldest first, and the files that could not be read."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory",
                         hint="give the directory `webhook listen --save DIR` wrote")
    store = EventStore(directory)
    saved = store.load_all()
    if not saved:
        raise UsageError(f"no saved events in {directory}")
    states = _states(directory)
    chosen, unreadable = [], []
    for item in saved:
        if not item.meta.get("_has_body"):
            unreadable.append(f"{item.key}.json")
            continue
        if ids and item.meta.get("id") not in ids:
            continue
        if not include_delivered and states.get(item.key) == DELIVERED:
            continue
        received = item.meta.get("received_at")
        if since is not None and not (isinstance(received, int | float) and received >= since):
            continue
        chosen.append(item)
    if ids:
        unknown = sorted(set(ids) - {e.meta.get("id") for e in saved})
        if unknown:
            raise UsageError(f"no saved event with id {unknown[0]!r} in {directory}")
    return chosen, unreadable


def _states(directory: Path) -> dict[str, str]:
    from cloudchat_cli.services.webhooks.queue import FILE_NAME

    if not (directory / FILE_NAME).exists():
        return {}
    queue = ForwardQueue(directory)
    try:
        return queue.states()
    finally:
        queue.close()


def replay(directory: Path, events: list[SavedEvent], url: str, *, retry: bool = True,
           on_attempt: Callable[[SavedEvent, Attempt, float | None], None] | None = None,
           send: Callable[..., list[Attempt]] = deliver) -> ReplayResult:
    """Post each event in order; stop at the first that is not taken after its retries."""
    result = ReplayResult()
    queue = ForwardQueue(directory)
    try:
        for index, item in enumerate(events):
            attempts = send(url, item.body, original_headers(item.meta), retry=retry,
                            delays=RETRY_DELAYS,
                            on_attempt=(lambda a, d, item=item: on_attempt(item, a, d))
                            if on_attempt else None)
            if not attempts[-1].ok:
                result.failed, result.attempts = item, attempts
                result.left = len(events) - index - 1
                return result
            queue.mark_delivered([(item.key, float(item.meta.get("received_at") or 0))])
            result.delivered.append(item)
        return result
    finally:
        queue.close()


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from now (``90m``, ``2h``, ``3d``), an ISO 8601 date or
    time (local time unless it has an offset), or epoch seconds."""
    from datetime import datetime

    from cloudchat_cli.core.durations import parse_duration

    raw = text.strip()
    if raw and raw[-1:].lower() in "smhd" and raw[:-1].replace(".", "", 1).isdigit():
        return now - parse_duration(raw, "--since")
    try:
        value = float(raw)
        if value > 1e9:
            return value
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration back from now (2h, 3d), a date or "
                         "time (2026-11-26, 2026-11-26T08:00), or epoch seconds") from None
