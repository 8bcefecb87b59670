"""Durations as people write them (``90``, ``15m``, ``1h``, ``3d``) and as we show them
(``4:05``, ``1:24:05``, ``3 d 2:00:00``)."""

from __future__ import annotations

import re

from cloudchat_cli.core.errors import UsageError

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_duration(text: str, option: str) -> float:
    """``90``, ``90s``, ``15m``, ``1.5h``, ``3d`` → seconds, or a usage error naming
    ``option`` (no sign, exponent, ``nan`` or ``inf``; one unit)."""
    match = _DURATION.fullmatch((text or "").lower())
    if not match:
        raise UsageError(f"{option} {text!r}: give a duration like 90, 15m, 1h or 3d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def fmt_duration(seconds: float) -> str:
    """``1:24:05``, ``3 d 2:00:00`` past a day, ``4:05`` under an hour."""
    seconds = int(max(0, seconds))
    days, seconds = divmod(seconds, 86400)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}" if hours or days else f"{minutes}:{secs:02d}"
    return f"{days} d {clock}" if days else clock
