"""The channel registry: every CloudChat channel, the names the CLI accepts for it, what a
recipient looks like there, and an example.

Validation (``services/messages.py``), help texts, error messages and shell completion derive
from ``REGISTRY``; nothing else names a channel's rules. How to add a channel: the section
"Adding a channel" in docs/architecture.md. The sandbox keeps its own copy of these rules
(``sandbox/contract.py``), so the two cannot share a bug; ``tests/test_channel_registry.py``
checks that they agree.
"""

from __future__ import annotations

from typing import NamedTuple

from cloudchat_cli.core.errors import UsageError


class Channel(NamedTuple):
    """One channel: its names, its recipient rule, and how to talk about it.

    A NamedTuple, not a frozen dataclass: this module loads on every command, and building a
    frozen dataclass costs ~0.5 ms of start-up (measured with bench/run), compiling the
    recipient patterns another ~0.2 ms."""

    name: str  # canonical: what the API takes and what is stored
    label: str  # for people: "WhatsApp"
    aliases: tuple[str, ...]  # other names accepted in any case; the first is shown in help
    # A regular expression a recipient as the API takes it (after normalisation) fully
    # matches; compiled on first use (``re``'s cache), not at import.
    recipient: str
    noun: str  # "invalid WhatsApp <noun> '…'": number, recipient
    rule: str  # after that, what a valid recipient is
    example: str  # a valid recipient, for help texts and tests
    phone: bool = False  # recipients are phone numbers: +, 00, separators, a local 0 normalised
    # Recipients starting with this are the same person in any case (Telegram @usernames).
    case_insensitive_prefix: str = ""


REGISTRY: tuple[Channel, ...] = (
    Channel("whatsapp", "WhatsApp", ("wa",), r"[1-9][0-9]{7,14}", "number",
            "an international number has 8-15 digits and starts with its country code",
            "6281234567890", phone=True),
    Channel("telegram", "Telegram", ("tg",),
            r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}", "recipient",
            "use a numeric chat id or @username", "@alice_bot", case_insensitive_prefix="@"),
    Channel("instagram", "Instagram", ("ig",), r"[0-9]{1,32}", "recipient",
            "use the numeric user id", "17841400000000"),
    Channel("messenger", "Messenger", ("fb", "facebook"), r"[0-9]{1,32}",
            "recipient", "use the numeric user id", "5432109876543210"),
)

BY_NAME: dict[str, Channel] = {c.name: c for c in REGISTRY}

CHANNELS: tuple[str, ...] = tuple(BY_NAME)

# Every accepted name (lowercase) → canonical name: each channel's name, then its aliases.
ALIASES: dict[str, str] = {
    alias: c.name for c in REGISTRY for alias in (c.name, *c.aliases)
}


class InvalidMessage(UsageError):
    """The message or its recipient is not valid; nothing was sent."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


def canonical_channel(value: str) -> str | None:
    """Return the canonical channel for ``value`` (any case, aliases allowed), or None."""
    return ALIASES.get(value.strip().lower()) if isinstance(value, str) else None


def parse_channel(value: str | None) -> str:
    """Return the canonical channel name for ``value`` or raise ``InvalidMessage``."""
    channel = canonical_channel(value or "")
    if channel is None:
        raise InvalidMessage(f"unknown channel {shown(value or '')}: use one of {choices()}",
                             field="channel")
    return channel


def channel_of(value: str) -> Channel:
    """The registry entry for a channel name or alias, or ``InvalidMessage``."""
    return BY_NAME[parse_channel(value)]


def choices(sep: str = ", ") -> str:
    """The channel names and their short aliases, for help and errors:
    ``whatsapp, telegram, instagram, messenger (or wa, tg, ig, fb)``."""
    short = sep.join(c.aliases[0] for c in REGISTRY if c.aliases)
    return sep.join(CHANNELS) + (f" (or {short})" if short else "")


def complete(incomplete: str) -> list[str]:
    """Shell completion of a channel: the names starting with it, else any alias that does."""
    word = incomplete.lower()
    return [c for c in CHANNELS if c.startswith(word)] or [
        a for a in ALIASES if a.startswith(word)]


def match_key(channel: str, recipient: str) -> str:
    """What two normalised recipients must share to be the same person: a recipient with the
    channel's ``case_insensitive_prefix`` (a Telegram @username) in lowercase, else as is."""
    entry = BY_NAME.get(channel)
    prefix = entry.case_insensitive_prefix if entry is not None else ""
    return recipient.lower() if prefix and recipient.startswith(prefix) else recipient


def _match_key_sql() -> str:
    # ASCII only (usernames are), so SQLite's lower() agrees with str.lower().
    whens = " ".join(
        f"WHEN {{t}}channel = '{c.name}' AND substr({{t}}recipient, 1, "
        f"{len(c.case_insensitive_prefix)}) = '{c.case_insensitive_prefix}' "
        "THEN lower({t}recipient)"
        for c in REGISTRY if c.case_insensitive_prefix)
    return f"(CASE {whens} ELSE {{t}}recipient END)" if whens else "{t}recipient"


# ``match_key`` in SQL, for a table with ``channel`` and ``recipient`` columns; ``{t}`` is the
# table prefix (``rows.`` or empty).
MATCH_KEY_SQL = _match_key_sql()


def shown(value: str, limit: int = 40) -> str:
    """``value`` quoted for an error message, cut at ``limit`` characters."""
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)
