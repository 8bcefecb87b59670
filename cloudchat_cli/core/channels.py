"""The four CloudChat channels and the short names the CLI accepts for them."""

from __future__ import annotations

CHANNELS: tuple[str, ...] = ("whatsapp", "telegram", "instagram", "messenger")

ALIASES: dict[str, str] = {
    "whatsapp": "whatsapp",
    "wa": "whatsapp",
    "telegram": "telegram",
    "tg": "telegram",
    "instagram": "instagram",
    "ig": "instagram",
    "messenger": "messenger",
    "fb": "messenger",
    "facebook": "messenger",
}


def canonical_channel(value: str) -> str | None:
    """Return the canonical channel for ``value`` (any case, aliases allowed), or None."""
    return ALIASES.get(value.strip().lower()) if isinstance(value, str) else None
