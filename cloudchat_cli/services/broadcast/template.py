"""Message templates: ``{column}`` substitution only, ``{{``/``}}`` for literal braces.

No attribute or index access, no conversions, no format specs: a template comes from a file an
operator may not have written, and ``str.format`` on it could read attributes or allocate
``{name:>999999999}``. Everything is checked once, against the header, before row 2 is read.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from cloudchat_cli.core.errors import UsageError


class TemplateError(UsageError):
    """The template is malformed or uses something other than plain ``{column}``."""


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[tuple[str, str | None], ...]  # (literal text, column or None)

    @property
    def columns(self) -> list[str]:
        return [c for _, c in self.parts if c is not None]

    def check_columns(self, header: list[str]) -> None:
        missing = [c for c in dict.fromkeys(self.columns) if c not in header]
        if missing:
            raise TemplateError(
                f"the template uses {', '.join('{' + m + '}' for m in missing)} but the CSV has "
                f"no such column",
                hint=f"columns: {', '.join(header)}",
            )

    def render(self, values: dict[str, str]) -> str:
        return "".join(lit + (values[col] if col is not None else "") for lit, col in self.parts)


def parse_template(source: str) -> Template:
    """Parse and check a template; raise ``TemplateError`` naming the problem."""
    try:
        pieces = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise TemplateError(
            f"template error: {exc}", hint="write {{ and }} for literal braces"
        ) from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in pieces:
        if field is None:
            parts.append((literal, None))
            continue
        name = field.strip()
        if not name or name.isdigit():
            raise TemplateError(
                "template has an empty or positional placeholder ({} or {0}); name a column, "
                "like {name}"
            )
        if any(ch in field for ch in ".[]"):
            raise TemplateError(
                f"template placeholder {{{field}}} uses attribute or index access; only plain "
                "{column} is allowed"
            )
        if conversion or spec:
            raise TemplateError(
                f"template placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} has a conversion or format spec; only plain "
                "{column} is allowed"
            )
        parts.append((literal, name))
    return Template(source, tuple(parts))
