"""Message templates: ``{column}`` substitution only, ``{{``/``}}`` for literal braces.

``{column|fallback}`` uses ``fallback`` when the row's cell is empty (or only spaces): a plain
text, which cannot itself hold ``{ } : !``. ``{column|}`` says an empty cell is fine as it is.

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
    parts: tuple[tuple[str, str | None, str | None], ...]  # (literal, column, fallback)

    @property
    def columns(self) -> list[str]:
        return [c for _, c, _ in self.parts if c is not None]

    @property
    def bare_columns(self) -> list[str]:
        """Columns used without a fallback: an empty cell leaves a gap in the message."""
        return list(dict.fromkeys(c for _, c, f in self.parts if c is not None and f is None))

    def check_columns(self, header: list[str], source: str = "the CSV") -> None:
        missing = [c for c in dict.fromkeys(self.columns) if c not in header]
        if missing:
            raise TemplateError(
                f"the template uses {', '.join('{' + m + '}' for m in missing)} but {source} has "
                f"no such column",
                hint=f"columns: {', '.join(header)}",
            )

    def render(self, values: dict[str, str]) -> str:
        out = []
        for literal, column, fallback in self.parts:
            out.append(literal)
            if column is not None:
                value = values[column]
                out.append(value if fallback is None or value.strip() else fallback)
        return "".join(out)


def parse_template(source: str) -> Template:
    """Parse and check a template; raise ``TemplateError`` naming the problem."""
    try:
        pieces = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise TemplateError(
            f"template error: {exc}", hint="write {{ and }} for literal braces"
        ) from None
    parts: list[tuple[str, str | None, str | None]] = []
    for literal, field, spec, conversion in pieces:
        if field is None:
            parts.append((literal, None, None))
            continue
        column, bar, rest = field.partition("|")
        name = column.strip()
        fallback = rest.strip() if bar else None
        if not name or name.isdigit():
            raise TemplateError(
                "template has an empty or positional placeholder ({} or {0}); name a column, "
                "like {name}"
            )
        if any(ch in column for ch in ".[]"):
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
        parts.append((literal, name, fallback))
    return Template(source, tuple(parts))
