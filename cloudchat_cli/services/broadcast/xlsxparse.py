"""openpyxl's read-only reader, with flat memory for a million rows.

openpyxl parses with ``iterparse`` and clears each element it has read, but leaves the cleared
element in the tree: ~100 bytes for every row of a sheet and for every entry of the
shared-strings table (where Excel and LibreOffice put every text), so a million-row sheet held
hundreds of MB of empty elements (bench/HISTORY.md, bench/xlsx.py); and a sheet
without a <dimension> element was parsed whole, that way, just to open the workbook. Here the
same parsers run with the parent cleared as they go, the sheet is not sized, and the shared
strings are kept in a few big strings instead of one Python object each. This reaches into
openpyxl's modules (pinned below 4); if they move, the public reader is used (correct, only
heavier, and without the mark for formulas never calculated).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

# XML cannot hold a NUL, so no cell's text can be this
UNCALCULATED = "\x00formula without a saved value"


class CompactStrings:
    """A read-only list of strings stored as one joined string per CHUNK of them."""

    CHUNK = 4096

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._ends = array("Q")  # each string's end, counted from its chunk's start
        self._pending: list[str] = []
        self._size = 0

    def append(self, text: str) -> None:
        self._pending.append(text)
        self._size += len(text)
        self._ends.append(self._size)
        if len(self._pending) == self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append("".join(self._pending))
            self._pending.clear()
            self._size = 0

    def done(self) -> CompactStrings:
        self._flush()
        return self

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self._ends):
            raise IndexError(index)  # openpyxl's list raised this too
        chunk, k = divmod(index, self.CHUNK)
        start = self._ends[index - 1] if k else 0
        return self._chunks[chunk][start : self._ends[index]]


def read_strings(source) -> CompactStrings:
    """openpyxl's ``read_string_table``, clearing each entry out of the tree."""
    from openpyxl.cell.text import Text
    from openpyxl.xml.constants import SHEET_MAIN_NS
    from openpyxl.xml.functions import iterparse

    entry, table = f"{{{SHEET_MAIN_NS}}}si", f"{{{SHEET_MAIN_NS}}}sst"
    strings = CompactStrings()
    root = None
    for event, node in iterparse(source, events=("start", "end")):
        if event == "start":
            if node.tag == table:
                root = node
        elif node.tag == entry:
            strings.append(Text.from_tree(node).content.replace("x005F_", ""))
            if root is not None:
                root.clear()
    return strings.done()


def load(path: Path):
    """``openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)``."""
    try:
        from openpyxl.reader.excel import SHARED_STRINGS, ExcelReader
        from openpyxl.worksheet._read_only import ReadOnlyWorksheet
    except ImportError:
        import openpyxl

        return openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)

    class Sheet(ReadOnlyWorksheet):
        def _get_size(self):
            """Not needed (rows are numbered as they come): openpyxl parses the whole sheet
            here, keeping every row, when the <dimension> element is missing."""

    class Reader(ExcelReader):
        def read_strings(self):
            part = self.package.find(SHARED_STRINGS)
            if part is not None:
                with self.archive.open(part.PartName[1:]) as src:
                    self.shared_strings = read_strings(src)

        def read_worksheets(self):
            for sheet, rel in self.parser.find_sheets():
                if rel.target in self.valid_files and "chartsheet" not in rel.Type:
                    ws = Sheet(self.wb, sheet.name, rel.target, self.shared_strings)
                    ws.sheet_state = sheet.state
                    self.wb._sheets.append(ws)

    reader = Reader(path, read_only=True, data_only=True, keep_links=False)
    reader.read()
    return reader.wb


def sheet_rows(ws) -> Iterator[tuple[int, list]]:
    """(row number, cell values) of a read-only sheet, in order; a formula that was never
    calculated (a file written by a program, not saved by a spreadsheet: openpyxl alone reads
    it as empty) is ``UNCALCULATED``."""
    try:
        from openpyxl.worksheet._reader import FORMULA_TAG, ROW_TAG, WorkSheetParser
        from openpyxl.xml.constants import SHEET_MAIN_NS
        from openpyxl.xml.functions import iterparse

        source = ws._get_source()
        strings, book = ws._shared_strings, ws.parent
    except (ImportError, AttributeError):
        ws.reset_dimensions()  # a wrong <dimension> (A1:XFD1048576) must not pad every row
        for number, values in enumerate(ws.iter_rows(min_row=1, values_only=True), start=1):
            if values:
                yield number, list(values)
        return
    sheet_data = f"{{{SHEET_MAIN_NS}}}sheetData"

    class Parser(WorkSheetParser):
        def parse_cell(self, element):
            cell = super().parse_cell(element)
            # a numeric formula with no saved value (<v/>); a text result says t="str"
            if (cell["value"] is None and element.get("t", "n") == "n"
                    and element.find(FORMULA_TAG) is not None):
                cell["value"] = UNCALCULATED
            return cell

        def rows(self):
            parent = None
            for event, element in iterparse(self.source, events=("start", "end")):
                if event == "start":
                    if element.tag == sheet_data:
                        parent = element
                elif element.tag == ROW_TAG:
                    yield self.parse_row(element)
                    self.row_dimensions.clear()  # LibreOffice gives every row attributes
                    if parent is not None:
                        parent.clear()  # the row just read is its only child

    with source:
        parser = Parser(source, strings, data_only=True, epoch=book.epoch,
                        date_formats=book._date_formats, timedelta_formats=book._timedelta_formats)
        for number, cells in parser.rows():
            if not cells:
                continue
            values = [None] * max(cell["column"] for cell in cells)
            for cell in cells:
                values[cell["column"] - 1] = cell["value"]
            yield number, values
