"""Read a broadcast workbook (.xlsx/.xlsm) as the same stream of (row, {column: value}) as a CSV.

openpyxl in read-only mode parses the sheet's XML as it goes (it is imported only here, and
only for a workbook). Cells arrive typed, so they become text without the damage a CSV export
does: an integer cell is its digits (6281234567891, never 6.28123E+12 or …891.0); a float cell
that holds a whole number below 2**53 is its integer digits too (every such float is exact, and
every phone number is below 10**15 < 2**53), any other float its shortest exact decimal; a date
is ISO 8601 (2026-11-26, or 2026-11-26 14:30 with a time); TRUE/FALSE as Excel shows them; a
formula is its value as last calculated and saved by the spreadsheet.

Rows keep the numbers Excel shows. The header is the first non-empty row, or the first of the
first rows that names the recipient column (a title row above it is skipped and said once).
Empty rows between data rows are skipped and counted; empty rows and columns after the data
are ignored. Columns left of the table and a pandas index column (unnamed, integers) are ignored.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from pathlib import Path

from cloudchat_cli.services.broadcast import xlsxparse
from cloudchat_cli.services.broadcast.csvsource import (
    MAX_COLUMNS,
    MAX_FIELD,
    CsvError,
    CsvInfo,
    RowStats,
    file_digest,
)

SUFFIXES = (".xlsx", ".xlsm")
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and any password-protected workbook
HEADER_SEARCH = 10  # rows looked at for a header naming the recipient column
EXACT_FLOAT = 2**53
MAX_PART = 256 * 2**20  # unpacked bytes of a part read whole (see _check_sizes)
# openpyxl is a dependency; a packager who split it out gets this instead of a traceback
INSTALL = "pip install openpyxl"


def magic(path: Path) -> str:
    """What the file's first bytes say it is: ``zip``, ``ole`` or ``other``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError:
        return "other"  # the reader names the problem
    if head.startswith(ZIP_MAGIC):
        return "zip"
    return "ole" if head == OLE_MAGIC else "other"


def is_workbook(path: Path) -> bool:
    """Whether to read ``path`` as a workbook; refuse a name that contradicts the content."""
    named = path.suffix.lower() in SUFFIXES
    if not path.is_file():
        return named  # the reader says "no such file" / "is a directory"
    kind = magic(path)
    if kind == "ole":
        raise CsvError(
            f"{path} is a legacy Excel 97-2003 (.xls) or password-protected workbook",
            hint="open it in Excel or LibreOffice and save it as .xlsx (without a password) "
            "or as CSV UTF-8",
        )
    if named and kind != "zip":
        raise CsvError(f"{path} is not an Excel workbook (no .xlsx content); if it is CSV text, "
                       f"rename it to {path.with_suffix('.csv').name}")
    if not named and kind == "zip":
        suffix = path.suffix or "(none)"
        raise CsvError(f"{path} is a workbook or zip archive, not CSV text (its name ends in "
                       f"{suffix})",
                       hint=f"if it is an Excel workbook, rename it to "
                       f"{path.with_suffix('.xlsx').name}; an .ods: save it as .xlsx or CSV")
    return named


def _openpyxl():
    try:
        import openpyxl
    except ImportError:
        raise CsvError("reading .xlsx needs the openpyxl package, which is not installed",
                       hint=f"install it: {INSTALL} (or save the sheet as CSV UTF-8)") from None
    return openpyxl


def _check_sizes(path: Path) -> None:
    """Refuse a part openpyxl would hold in memory whole (the shared strings, styles…) that
    unpacks to more than MAX_PART: a small file must not take all the memory (zip bomb). Sheets
    are streamed, so their size does not matter. zipfile never unpacks more than the size an
    entry declares, so the declared sizes are a bound."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            for item in zf.infolist():
                if item.file_size > MAX_PART and not item.filename.startswith("xl/worksheets/"):
                    raise CsvError(f"{path}: {item.filename} unpacks to "
                                   f"{item.file_size:,} bytes; at most {MAX_PART:,} are read",
                                   hint="save the sheet as CSV UTF-8 instead")
    except (zipfile.BadZipFile, OSError, EOFError):
        return  # openpyxl names the problem


def _load(path: Path):
    openpyxl = _openpyxl()
    from zipfile import BadZipFile

    _check_sizes(path)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no default style", unknown extensions: noise
            return xlsxparse.load(path)
    except (BadZipFile, KeyError, ValueError, TypeError, OSError, EOFError,
            openpyxl.utils.exceptions.InvalidFileException) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CsvError(f"{path} cannot be read as an Excel workbook: {detail}",
                       hint="open it in Excel or LibreOffice and save it again as .xlsx") from None


def _sheet(book, path: Path, name: str | None):
    if name is None:  # the first sheet a person sees: a hidden one is usually old or scratch
        visible = [ws for ws in book.worksheets if ws.sheet_state == "visible"]
        return (visible or book.worksheets or [None])[0]
    if name in book.sheetnames:
        return book[name]
    raise CsvError(f"{path} has no sheet named {name!r}",
                   hint=f"sheets: {', '.join(book.sheetnames)}")


def _sheet_note(book, ws) -> str | None:
    """What the plan says about the sheet it read by default, when there was a choice."""
    titles = book.sheetnames
    if len(titles) < 2:
        return None
    hidden = titles[:titles.index(ws.title)]
    if hidden:
        return (f"sheet {ws.title!r} read: {', '.join(repr(t) for t in hidden)} before it "
                f"{'is' if len(hidden) == 1 else 'are'} hidden (--sheet NAME reads another)")
    return f"sheet {ws.title!r} read, the first of {len(titles)} (--sheet NAME reads another)"


def cell_text(value: object) -> str:
    """A cell's value as the text a message or a recipient needs (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < EXACT_FLOAT:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if value.second else "minutes")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def column_letter(index: int) -> str:
    """Excel's name for the 0-based column ``index`` (0 → A, 26 → AA)."""
    name, n = "", index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        name = chr(65 + rest) + name
    return name


def _values(path: Path, sheet: str | None,
            found: dict | None = None) -> Iterator[tuple[int, list[str]]]:
    """(Excel row number, cell texts) for every row that has a cell, streaming; the sheet's
    title goes into ``found``."""
    book = _load(path)
    number = 0
    try:
        ws = _sheet(book, path, sheet)
        if ws is None:
            return
        if found is not None:
            found["title"] = ws.title
            found["note"] = _sheet_note(book, ws) if sheet is None else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for number, values in xlsxparse.sheet_rows(ws):
                yield number, [cell_text(v) for v in values]
    except CsvError:
        raise
    except Exception as exc:  # a damaged part inside the zip: openpyxl has no single error
        raise CsvError(f"{path}: the sheet cannot be read after row {number}: "
                       f"{type(exc).__name__}: {str(exc)[:120]}",
                       hint="open it in Excel or LibreOffice and save it again as .xlsx") from None
    finally:
        book.close()


def _blank(values: list[str]) -> bool:
    return not any(v.strip() for v in values)


def open_xlsx(path: Path, sheet: str | None = None, to_column: str = "to") -> CsvInfo:
    """Check the workbook and find its header; return what ``rows`` needs."""
    if not path.exists():
        raise CsvError(f"{path}: no such file")
    sha, size = file_digest(path)
    first: tuple[int, list[str]] | None = None
    header: tuple[int, list[str]] | None = None
    seen = 0
    found: dict = {}
    reader = _values(path, sheet, found)
    try:
        for number, values in reader:
            if _blank(values):
                continue
            first = first or (number, values)
            if to_column in (v.strip() for v in values):
                header = (number, values)
                break
            seen += 1
            if seen >= HEADER_SEARCH:
                break
    finally:
        reader.close()
    if first is None:
        raise CsvError(f"{path}: the sheet is empty" if sheet is None
                       else f"{path}: sheet {sheet!r} is empty",
                       hint="the first row must be a header, e.g. to | name")
    notes = [found["note"]] if found.get("note") else []
    if header is None:
        header = first  # then the plan says which column is missing
    elif header[0] != first[0]:
        above = (f"row {first[0]}" if header[0] - first[0] == 1
                 else f"rows {first[0]}–{header[0] - 1}")
        notes.append(f"{above} above the header (a title): ignored")
    return _with_header(path, sha, size, found["title"], header[0], header[1], notes)


def _with_header(path: Path, sha: str, size: int, sheet: str, row: int,
                 cells: list[str], notes: list[str]) -> CsvInfo:
    names = [c.strip() for c in cells]
    if len(names) > MAX_COLUMNS and any(names[MAX_COLUMNS:]):
        raise CsvError(f"{path}: more than {MAX_COLUMNS} columns are not supported")
    named = [i for i, name in enumerate(names) if name]
    first, last = named[0], named[-1]
    if first:
        notes.append(f"column(s) {column_letter(0)}–{column_letter(first - 1)} have no header "
                     "name: ignored (they must stay empty, or hold an index)")
    for i in range(first, last + 1):
        if not names[i]:
            raise CsvError(
                f"{path}: row {row}, column {column_letter(i)} has an empty header name",
                hint="a header merged across columns names only its first column: give every "
                "column its own name (unmerge the cells)")
    seen: dict[str, int] = {}
    for i in named:
        if names[i] in seen:
            raise CsvError(f"{path}: row {row} has the column name {names[i]!r} twice "
                           f"(columns {column_letter(seen[names[i]])} and {column_letter(i)})")
        seen[names[i]] = i
    return CsvInfo(path, "", [names[i] for i in named], sha, size, "", tuple(named),
                   last + 1, False, first > 0, tuple(notes), sheet=sheet, header_row=row)


def rows(info: CsvInfo, stats: RowStats | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (Excel row number, {column: value}) for every data row after the header.

    Empty rows are counted in ``stats`` only when a data row follows them (an empty area
    after the data is not a finding)."""
    stats = stats if stats is not None else RowStats()
    gaps: list[int] = []
    last = info.header_row
    for number, values in _values(info.path, info.sheet):
        if number <= info.header_row:
            continue
        if _blank(values):
            continue
        gaps.extend(range(last + 1, number))  # rows without any cell, and blank ones
        last = number
        if gaps:
            stats.empty += len(gaps)
            stats.empty_examples.extend(gaps[: 5 - len(stats.empty_examples)])
            gaps.clear()
        _check_unnamed(info, number, values)
        out = {}
        for name, i in zip(info.header, info.columns, strict=True):
            value = values[i] if i < len(values) else ""
            if value == xlsxparse.UNCALCULATED:
                raise CsvError(
                    f"{info.path}: row {number}, column {column_letter(i)} ({name!r}) is a "
                    "formula that was never calculated: the file was written by a program "
                    "(openpyxl, pandas…), not saved by a spreadsheet",
                    hint="open it in Excel or LibreOffice and save it, then run again")
            if len(value) > MAX_FIELD:
                raise CsvError(f"{info.path}: row {number}, column {column_letter(i)} is larger "
                               f"than {MAX_FIELD // 1024} KiB")
            out[name] = value
        yield number, out


def _check_unnamed(info: CsvInfo, number: int, values: list[str]) -> None:
    used = info.columns
    for i, value in enumerate(values):
        if not value.strip() or i in used:
            continue
        if i < used[0] and i == 0 and value.strip().lstrip("-").isdigit():
            continue  # pandas' to_excel() index: 0, 1, 2, …
        raise CsvError(
            f"{info.path}: row {number}, column {column_letter(i)} has a value but no header "
            f"name (row {info.header_row})",
            hint="name the column in the header row, or delete it (a header merged across "
            "columns names only its first: unmerge it and name each column)")
