"""Rates as people write them: ``40/min``, ``2/s``, ``500/h``."""

from __future__ import annotations

import re

UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "m": 60.0,
         "h": 3600.0, "hr": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


def parse_rate(text: str) -> tuple[float, str]:
    """``"40/min"`` → (requests per second, the rate as written back: ``"40/min"``)."""
    if not isinstance(text, str):
        raise ValueError(f"must be like 40/min, 2/s or 500/h, got {text!r}")
    match = _RATE.match(text.lower())
    if not match or match.group(2) not in UNITS:
        raise ValueError(f"must be like 40/min, 2/s or 500/h, got {text!r}")
    count = float(match.group(1))
    if not count > 0 or count > 1e9:
        raise ValueError(f"must be more than 0 and a sane number, got {text!r}")
    unit = match.group(2)
    short = {1.0: "s", 60.0: "min", 3600.0: "h"}[UNITS[unit]]
    return count / UNITS[unit], f"{count:g}/{short}"


def parse_rate_setting(value: object) -> str:
    """The ``broadcast_rate`` setting: empty (use the App's whole limit) or a rate."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return ""
    return parse_rate(value)[1]  # type: ignore[arg-type]


def per_minute(per_second: float) -> str:
    """``40/min``, ``1.5/min``; below one a minute per hour: ``90/h``, ``1/h``."""
    value = per_second * 60
    if value < 1 - 1e-9:
        return f"{per_second * 3600:.3g}/h"
    return f"{value:.1f}/min" if value < 10 and value != int(value) else f"{value:.0f}/min"


def seconds_text(seconds: float) -> str:
    """``0.1 s``, ``40 s``, ``36 min``, ``1 h``: a gap in the unit people read it in."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"
