"""Country calling codes (ITU-T E.164), to tell which country an international number is for.

The codes form a prefix code (no code is the start of another), so the first 1, 2 or 3 digits
of a number name at most one country code.
"""

from __future__ import annotations


def _expand(spec: str) -> frozenset[str]:
    codes: set[str] = set()
    for item in spec.split():
        if "-" in item:
            low, high = item.split("-")
            codes.update(str(n) for n in range(int(low), int(high) + 1))
        else:
            codes.add(item)
    return frozenset(codes)


CODES = _expand(
    "1 7 "
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51-58 60-66 81 82 84 86 90-95 98 "
    "211 212 213 216 218 220-258 260-269 290 291 297-299 350-359 370-378 380-383 385-387 389 "
    "420 421 423 500-509 590-599 670 672-683 685-692 800 808 850 852 853 855 856 870 878 "
    "880-883 886 888 960-968 970-977 979 992-996 998"
)


def country_code(number: str) -> str | None:
    """The calling code an international number (digits only) starts with, or None."""
    for size in (1, 2, 3):
        if number[:size] in CODES:
            return number[:size]
    return None
