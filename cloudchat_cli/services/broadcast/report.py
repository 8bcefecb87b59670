"""Per-row reports people can open: a workbook, or a CSV in the input's own dialect.

Each row carries the input's columns as they were read (name, order id…), then what happened to
it. In a workbook every text is a text cell formatted as Text, so a phone number or an id is
never turned into 6.28137E+11 and nothing is evaluated as a formula; a CSV report uses the
input's delimiter (an Indonesian-locale Excel opens a semicolon file in columns) and a UTF-8
byte-order mark when the input had one or was in a legacy encoding (Excel then reads UTF-8),
and neutralises every cell a spreadsheet could evaluate (``safe_cell``).
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast.csvsource import CsvError, CsvInfo, file_digest
from cloudchat_cli.services.broadcast.journal import Journal

COLUMNS = ["row", "channel", "recipient", "status", "message_id", "http_status", "error"]
NUMERIC = {"row", "http_status"}  # numbers in a workbook; everything else is text
PREFIX = "cloudchat_"  # for one of ours whose name the input already uses
XLSX_ROWS = 1_048_576  # a sheet's limit: more rows go on to a second sheet
XLSX_CELL = 32_767  # characters in one cell
REFUSED = (".xls", ".xlsm", ".xlsb", ".ods", ".numbers")
# Spreadsheets evaluate a cell starting with these as a formula (OWASP "CSV injection"); the
# full-width forms are read as formulas by some locales' Excel too.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Characters XML 1.0 cannot hold (openpyxl refuses them): shown as \xNN instead.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
SENDING = ("its request may have gone out but the answer was not recorded (the run stopped, or "
           "the journal could not be written); it may have been delivered")


def safe_cell(value: object) -> str:
    """Neutralise a report cell: prefix one apostrophe to anything a spreadsheet could evaluate.

    A cell that already starts with an apostrophe gets one too, so removing exactly one leading
    apostrophe always gives back the original text (``'+62 812`` → ``+62 812``)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith((*_FORMULA_START, "'")) else text


@dataclass
class ReportTarget:
    """Where the report goes and the input whose columns it carries."""

    path: Path
    info: CsvInfo | None = None
    note: str | None = None  # set by ``write``: what the report could not include, and why

    @property
    def workbook(self) -> bool:
        return self.path.suffix.lower() == ".xlsx"

    def __str__(self) -> str:
        return str(self.path)


def target(path: Path, info: CsvInfo | None) -> ReportTarget:
    """Check ``--report PATH`` before anything is sent: .xlsx is a workbook, other names CSV."""
    path = Path(path)
    if path.suffix.lower() in REFUSED:
        raise UsageError(f"--report {path}: a report is written as .xlsx or .csv, not "
                         f"{path.suffix}", hint=f"e.g. --report {path.with_suffix('.xlsx')}")
    if path.is_dir():
        raise UsageError(f"--report {path} is a directory")
    if info is not None and _same_file(path, info.path):
        raise UsageError(f"--report {path} is the input file: writing the report would "
                         "overwrite it", hint="give the report another name, e.g. "
                         f"--report {path.with_name(path.stem + '-report' + path.suffix)}")
    _check_writable(path)
    return ReportTarget(path, info)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_writable(path: Path) -> None:
    """The report is written at the end (temp file + rename): make sure now that it can be."""
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"--report {path}: the folder {parent} does not exist")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=parent)
    except OSError as exc:
        raise UsageError(f"--report {path}: cannot write in {parent}: "
                         f"{exc.strerror}") from None
    os.close(fd)
    os.unlink(name)


def write(journal: Journal, report: ReportTarget | Path) -> int:
    """Write the per-row report atomically (temp file + rename); return the number of rows."""
    if not isinstance(report, ReportTarget):
        report = ReportTarget(Path(report))
    info = report.info
    if info is not None:
        try:
            same = file_digest(info.path)[0] == info.sha256
        except CsvError:
            same = False
        if not same:
            report.note = (f"{info.path} changed or is gone since the broadcast started: its "
                           "columns are not in the report")
            info = None
    tmp = report.path.with_name(f".{report.path.name}.tmp")
    try:
        try:
            count = _write(journal, report, info, tmp)
        except CsvError as exc:  # the input could not be read again as it was at preflight
            report.note = f"the input's columns are not in the report: {exc.message}"
            count = _write(journal, report, None, tmp)
        tmp.replace(report.path)
    except OSError as exc:
        raise UsageError(f"cannot write the report {report.path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _write(journal: Journal, report: ReportTarget, info: CsvInfo | None, tmp: Path) -> int:
    inputs = list(info.header) if info is not None else []
    ours = [PREFIX + c if c in inputs else c for c in COLUMNS]
    rows = _rows(journal, info)
    if report.workbook:
        return _xlsx(tmp, inputs, ours, rows)
    return _csv(tmp, info, inputs + ours, rows)


def _rows(journal: Journal, info: CsvInfo | None) -> Iterator[tuple[list[str], list]]:
    """(the input's values, our values) per journal row, the input read alongside (both are in
    row order: a merge, flat memory)."""
    from cloudchat_cli.services.broadcast.plan import input_rows

    source = input_rows(info) if info is not None else iter(())
    blank = [""] * (len(info.header) if info is not None else 0)
    current: tuple[int, dict[str, str]] | None = next(source, None)
    try:
        for row, recipient, channel, state, message_id, http_status, error in (
            journal.report_rows()
        ):
            while current is not None and current[0] < row:
                current = next(source, None)
            values = blank
            if current is not None and current[0] == row:
                values = list(current[1].values())
            if state == "sending" and not error:
                error = SENDING
            state = "unknown" if state == "sending" else state
            yield values, [row, channel, recipient, state, message_id, http_status, error]
    finally:
        if hasattr(source, "close"):
            source.close()


def _csv(tmp: Path, info: CsvInfo | None, header: list[str],
         rows: Iterator[tuple[list[str], list]]) -> int:
    delimiter, bom, sep_line = ",", False, False
    if info is not None:
        delimiter = info.delimiter or ","
        # plain UTF-8 stays plain; a BOM, a legacy encoding or a workbook get one so that
        # Excel reads the UTF-8 report's names right
        bom = info.sheet is not None or info.encoding not in ("utf-8",)
        sep_line = info.sep_line
    count = 0
    with tmp.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        if sep_line:
            fh.write(f"sep={delimiter}\r\n")
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow([safe_cell(c) for c in header])
        for values, ours in rows:
            writer.writerow([safe_cell(v) for v in values] +
                            [safe_cell("" if v is None else v) for v in ours])
            count += 1
    return count


def _text(value: object) -> str:
    text = _ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    return text if len(text) <= XLSX_CELL else text[: XLSX_CELL - 1] + "…"


def _xlsx(tmp: Path, inputs: list[str], ours: list[str],
          rows: Iterator[tuple[list[str], list]]) -> int:
    from cloudchat_cli.services.broadcast.xlsxsource import _openpyxl

    openpyxl = _openpyxl()
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = openpyxl.Workbook(write_only=True)
    header = inputs + ours
    numeric = [c in NUMERIC for c in COLUMNS]
    sheet = None
    cells: list = []

    def new_sheet(n: int):
        ws = book.create_sheet("report" if n == 1 else f"report ({n})")
        ws.freeze_panes = "A2"
        for i, name in enumerate(header):
            ws.column_dimensions[_letter(i)].width = 60 if name == ours[-1] else 16
        bold = Font(bold=True)
        ws.append([_cell(WriteOnlyCell(ws), name, font=bold) for name in header])
        return ws

    count = 0
    for values, mine in rows:
        if sheet is None or count % (XLSX_ROWS - 1) == 0:
            sheet = new_sheet(count // (XLSX_ROWS - 1) + 1)
            cells = [_cell(WriteOnlyCell(sheet), "") for _ in header]  # reused: Text format
        out = []
        for cell, value in zip(cells, values, strict=False):
            out.append(_cell(cell, value))
        for i, value in enumerate(mine):
            if value is None or value == "":
                out.append(None)
            elif numeric[i]:
                out.append(int(value))
            else:
                out.append(_cell(cells[len(values) + i], value))
        sheet.append(out)
        count += 1
    if sheet is None:
        new_sheet(1)
    book.save(tmp)
    return count


def _cell(cell, value: object, font=None):
    """``cell`` holding ``value`` as a Text-formatted string cell, never a formula."""
    cell.value = _text(value)
    cell.data_type = "s"  # openpyxl would store "=…" as a formula
    if cell.number_format != "@":
        cell.number_format = "@"
    if font is not None:
        cell.font = font
    return cell


def _letter(index: int) -> str:
    from cloudchat_cli.services.broadcast.xlsxsource import column_letter

    return column_letter(index)
