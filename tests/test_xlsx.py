"""Workbooks as broadcast input: openpyxl- and LibreOffice-written files read as Excel shows them.

The workbooks in tests/fixtures/ were written by openpyxl and by LibreOffice Calc
(``make_workbooks.py``); the small ones made here are written by openpyxl, the program an
operator's own scripts (and pandas) use.
"""

import datetime as dt
import io
import sqlite3
import sys
import types
import zipfile
from pathlib import Path

import openpyxl
import pytest

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast import csvsource, xlsxparse, xlsxsource
from cloudchat_cli.services.broadcast.journal import VERSION, Journal
from cloudchat_cli.services.broadcast.plan import (
    BroadcastOptions,
    open_input,
    prepare,
    refusal,
    run_preflight,
)

FIXTURES = Path(__file__).parent / "fixtures"
LIBREOFFICE = FIXTURES / "customers_rich_libreoffice.xlsx"
OPENPYXL = FIXTURES / "customers_rich_openpyxl.xlsx"
NAMES = ["Budi", "Sàri Dewi", 'Eko "Jago" Prasetyo', "Line1\nLine2", "Rina, S.Kom", "Dewi;Ayu",
         "日本 👋"]


def read(path, sheet=None, to_column="to"):
    info = xlsxsource.open_xlsx(Path(path), sheet, to_column)
    stats = csvsource.RowStats()
    return info, list(xlsxsource.rows(info, stats)), stats


def workbook(path, rows, *, sheets=None, merge=None):
    book = openpyxl.Workbook()
    ws = book.active
    for row in rows:
        ws.append(row)
    if merge:
        ws.merge_cells(merge)
    for title, extra in (sheets or {}).items():
        other = book.create_sheet(title)
        for row in extra:
            other.append(row)
    book.save(path)
    return path


# --- cell values ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [
    (6281234567891, "6281234567891"),
    (6281234567891.0, "6281234567891"),  # a float holding a whole number: its digits
    (float(2**53 - 1), str(2**53 - 1)),
    (float(2**53), "9007199254740992.0"),  # not every integer is exact up here: repr
    (1e20, "1e+20"),
    (99.5, "99.5"),
    (0.1, "0.1"),
    (-0.0, "0"),
    (True, "TRUE"),
    (None, ""),
    ("00123", "00123"),
    (dt.datetime(2026, 12, 1), "2026-12-01"),
    (dt.datetime(2026, 12, 2, 14, 30), "2026-12-02 14:30"),
    (dt.datetime(2026, 12, 2, 14, 30, 5), "2026-12-02 14:30:05"),
    (dt.time(9, 15), "09:15:00"),
])
def test_cell_text(value, text):
    assert xlsxsource.cell_text(value) == text


def test_column_letters():
    assert [xlsxsource.column_letter(i) for i in (0, 25, 26, 701, 702)] == [
        "A", "Z", "AA", "ZZ", "AAA"]


# --- real files -------------------------------------------------------------------------------

def test_openpyxl_customers_sheet_reads_like_its_csv_exports():
    info, rows, stats = read(FIXTURES / "customers.xlsx")
    assert (info.sheet, info.header) == ("Sheet", ["to", "name", "order_id", "note"])
    assert [n for n, _ in rows] == list(range(2, 9))  # Excel's row numbers
    assert [r["name"] for _, r in rows] == NAMES
    # numbers stored as numbers and as text arrive as the same digits
    assert [r["to"] for _, r in rows] == [f"628123456789{i}" for i in range(1, 8)]
    assert rows[1][1]["order_id"] == "00123"
    assert stats.empty == 0 and info.notes == ()


def test_libreoffice_sheet_title_dates_formulas_and_empty_areas():
    info, rows, stats = read(LIBREOFFICE)
    assert info.header_row == 2 and info.notes == ("row 1 above the header (a title): ignored",)
    assert info.header == ["to", "wa_lokal", "name", "order_id", "due", "amount", "total",
                           "greeting"]
    assert [n for n, _ in rows] == [3, 4, 5, 7, 8]  # row 6 is empty; 9–14 an empty area
    assert (stats.empty, stats.empty_examples) == (1, [6])
    first, second, third, fourth, fifth = (r for _, r in rows)
    assert first == {"to": "6281234567891", "wa_lokal": "081234567891", "name": "Budi",
                     "order_id": "00123", "due": "2026-12-01", "amount": "150000",
                     "total": "300000", "greeting": "Budi"}
    assert (second["due"], second["amount"], second["total"]) == ("2026-12-02 14:30", "99.5",
                                                                   "199")
    assert (third["name"], third["greeting"]) == ("", "Kak")  # a formula's text result
    assert fourth["to"] == "6281234567895"  # stored as the float 6281234567895.0
    assert fifth["to"] == "6281234567896"  # =6281234567000+896, as LibreOffice calculated it
    assert fourth["order_id"] == "000042"


def test_a_formula_never_calculated_is_refused_by_row_and_column():
    info = xlsxsource.open_xlsx(OPENPYXL)
    with pytest.raises(csvsource.CsvError, match=r"row 3, column G \('total'\) is a formula "
                       "that was never calculated"):
        list(xlsxsource.rows(info))


def test_preflight_of_the_text_phone_column_with_leading_zeros(tmp_path):
    opts = BroadcastOptions(csv_path=LIBREOFFICE, template="Halo {greeting}, {order_id}",
                            to_column="wa_lokal", default_country_code="62")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    plan = run_preflight(info, template, opts, journal)
    assert (plan.rows, plan.valid, plan.invalid, plan.empty_rows) == (5, 5, 0, 1)
    assert plan.warnings == []  # {greeting} is never empty: its formula falls back to Kak
    sent = [(row, p["to"], p["text"]) for row, p in journal.preview(10)]
    assert sent[0] == (3, "6281234567891", "Halo Budi, 00123")
    assert sent[2] == (5, "6281234567893", "Halo Kak, ORD-19")
    assert [to for _, to, _ in sent] == [f"62812345678{n}" for n in (91, 92, 93, 95, 96)]
    journal.close()


def test_cells_that_cannot_be_phone_numbers_are_refused_by_row_and_column(tmp_path):
    """A fraction, a date and a minus would each send to another number: refused, named."""
    path = workbook(tmp_path / "bad.xlsx", [
        ["to", "name"], [6281234567801.5, "A"], [dt.datetime(2026, 1, 1), "B"],
        [-6281234567803, "C"], [6281234567804, "D"]])
    opts = BroadcastOptions(csv_path=path, template="Hi {name}", channel="whatsapp")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    try:
        plan = run_preflight(info, template, opts, journal)
        assert (plan.valid, plan.invalid) == (1, 3)
        errors = dict(journal.errors(("invalid",), 10))
    finally:
        journal.close()
    assert "row 2, column 'to'" in errors[2] and "decimal point" in errors[2]
    assert "row 3, column 'to'" in errors[3] and "looks like a date" in errors[3]
    assert "row 4, column 'to'" in errors[4] and "minus" in errors[4]


# --- the header -------------------------------------------------------------------------------

def test_a_header_merged_across_data_columns_names_the_column(tmp_path):
    path = workbook(tmp_path / "m.xlsx", [["to", "kontak", None, "note"],
                                          [6281234567891, "Budi", "x", "y"]], merge="B1:C1")
    with pytest.raises(csvsource.CsvError, match=r"row 1, column C has an empty header name"
                       ) as err:
        xlsxsource.open_xlsx(path)
    assert "merged" in err.value.hint
    # merged over the last columns: found at the first row with a value there
    path = workbook(tmp_path / "n.xlsx", [["to", "kontak", None], [6281234567891, "Budi", "x"]],
                    merge="B1:C1")
    info = xlsxsource.open_xlsx(path)
    with pytest.raises(csvsource.CsvError, match="row 2, column C has a value but no header "
                       r"name \(row 1\)") as err:
        list(xlsxsource.rows(info))
    assert "merged" in err.value.hint


def test_columns_left_of_the_table_and_a_pandas_index_are_ignored(tmp_path):
    path = workbook(tmp_path / "p.xlsx", [[None, "to", "name"], [0, 6281234567891, "A"],
                                          [1, 6281234567892, "B"]])
    info, rows, _ = read(path)
    assert info.index_column and "column(s) A–A have no header name" in info.notes[0]
    assert [r for _, r in rows] == [{"to": "6281234567891", "name": "A"},
                                    {"to": "6281234567892", "name": "B"}]
    bad = workbook(tmp_path / "q.xlsx", [["to", "name", None], [6281234567891, "A", "stray"]])
    info = xlsxsource.open_xlsx(bad)
    with pytest.raises(csvsource.CsvError, match="row 2, column C has a value but no header"):
        list(xlsxsource.rows(info))


def test_duplicate_and_missing_columns(tmp_path):
    path = workbook(tmp_path / "d.xlsx", [["to", "name", "name"], [6281234567891, "A", "B"]])
    with pytest.raises(csvsource.CsvError, match="'name' twice .columns B and C."):
        xlsxsource.open_xlsx(path)
    path = workbook(tmp_path / "n.xlsx", [["phone", "name"], [6281234567891, "A"]])
    with pytest.raises(csvsource.CsvError, match="no 'to' column"):
        prepare(BroadcastOptions(csv_path=path, template="Hi {name}"))


def test_empty_sheet(tmp_path):
    with pytest.raises(csvsource.CsvError, match="the sheet is empty"):
        xlsxsource.open_xlsx(workbook(tmp_path / "e.xlsx", []))


def test_a_wrong_dimension_does_not_pad_rows(tmp_path):
    """Some writers declare A1:XFD1048576; the rows are what the sheet holds."""
    path = workbook(tmp_path / "w.xlsx", [["to", "name"], [6281234567891, "A"]])
    data = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(data, "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = body.replace(b'<dimension ref="A1:B2"', b'<dimension ref="A1:XFD1048576"')
                assert b"XFD1048576" in body
            dst.writestr(item, body)
    path.write_bytes(data.getvalue())
    info, rows, stats = read(path)
    assert (info.width, rows, stats.empty) == (2, [(2, {"to": "6281234567891", "name": "A"})], 0)


# --- sheets -----------------------------------------------------------------------------------

def test_sheet_option(tmp_path):
    path = workbook(tmp_path / "s.xlsx", [["to", "name"], [6281234567891, "A"]],
                    sheets={"Batch 2": [["to", "name"], [6281234567899, "Z"]]})
    assert read(path)[1] == [(2, {"to": "6281234567891", "name": "A"})]
    info, rows, _ = read(path, "Batch 2")
    assert (info.sheet, rows) == ("Batch 2", [(2, {"to": "6281234567899", "name": "Z"})])
    with pytest.raises(csvsource.CsvError, match="no sheet named 'Nope'") as err:
        xlsxsource.open_xlsx(path, "Nope")
    assert err.value.hint == "sheets: Sheet, Batch 2"
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("to,name\n6281234567891,A\n")
    with pytest.raises(csvsource.CsvError.__mro__[1], match="--sheet is for .xlsx"):
        open_input(BroadcastOptions(csv_path=csv_path, sheet="x"))


def test_the_default_sheet_is_the_first_visible_one_and_the_plan_says_which(tmp_path):
    path = workbook(tmp_path / "h.xlsx", [["to", "name"], [6281234567800, "OLD"]],
                    sheets={"Kirim": [["to", "name"], [6281234567899, "Z"]]})
    book = openpyxl.load_workbook(path)
    book["Sheet"].sheet_state = "hidden"
    book.save(path)
    info, rows, _ = read(path)
    assert (info.sheet, rows) == ("Kirim", [(2, {"to": "6281234567899", "name": "Z"})])
    assert any("sheet 'Kirim' read" in n and "'Sheet'" in n and "hidden" in n
               for n in info.notes)
    assert read(path, "Sheet")[1] == [(2, {"to": "6281234567800", "name": "OLD"})]
    both = workbook(tmp_path / "v.xlsx", [["to"], [6281234567891]], sheets={"B": [["to"]]})
    assert any("sheet 'Sheet' read" in n for n in xlsxsource.open_xlsx(both).notes)
    one = workbook(tmp_path / "o.xlsx", [["to"], [6281234567891]])
    assert not any("read" in n for n in xlsxsource.open_xlsx(one).notes)


def test_an_unknown_template_column_in_a_workbook_names_the_sheet(tmp_path):
    path = workbook(tmp_path / "t.xlsx", [["to", "name"], [6281234567891, "A"]])
    with pytest.raises(UsageError, match="the sheet has no such column"):
        prepare(BroadcastOptions(csv_path=path, template="Hi {nama}"))


def test_csv_options_on_a_workbook_are_refused(tmp_path):
    path = workbook(tmp_path / "s.xlsx", [["to", "name"], [6281234567891, "A"]])
    with pytest.raises(csvsource.CsvError.__mro__[1], match="for CSV files, not workbooks"):
        open_input(BroadcastOptions(csv_path=path, delimiter=";"))


# --- the name and the content disagree ----------------------------------------------------------

def test_a_workbook_named_csv_is_said_to_be_one(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes((FIXTURES / "customers.xlsx").read_bytes())
    with pytest.raises(csvsource.CsvError, match="is a workbook or zip archive, not CSV text"
                       ) as err:
        open_input(BroadcastOptions(csv_path=path))
    assert "rename it to customers.xlsx" in err.value.hint


def test_a_csv_named_xlsx_is_said_to_be_text(tmp_path):
    path = tmp_path / "customers.xlsx"
    path.write_text("to,name\n6281234567891,A\n")
    with pytest.raises(csvsource.CsvError, match="not an Excel workbook .* rename it to "
                       "customers.csv"):
        open_input(BroadcastOptions(csv_path=path))


@pytest.mark.parametrize("name", ["old.xls", "old.xlsx", "old.csv"])
def test_legacy_or_password_protected_workbooks(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(xlsxsource.OLE_MAGIC + b"\0" * 504)
    with pytest.raises(csvsource.CsvError, match="legacy Excel 97-2003 .* or password-protected"):
        open_input(BroadcastOptions(csv_path=path))


def test_a_zip_that_is_not_a_workbook(tmp_path):
    path = tmp_path / "notes.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(csvsource.CsvError, match="cannot be read as an Excel workbook"):
        open_input(BroadcastOptions(csv_path=path))
    path.write_bytes(xlsxsource.ZIP_MAGIC + b"\0" * 100)  # truncated
    with pytest.raises(csvsource.CsvError, match="cannot be read as an Excel workbook"):
        open_input(BroadcastOptions(csv_path=path))


def padded(source, target, pad):
    """``source`` with these parts padded by XML whitespace to the given sizes."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename in pad:
                head, sep, tail = body.rpartition(b"</")
                body = head + b" " * (pad[item.filename] - len(body)) + sep + tail
            dst.writestr(item.filename, body)
    return target


def test_a_part_that_unpacks_too_big_is_refused_before_reading(tmp_path, monkeypatch):
    """A small file whose shared strings unpack to gigabytes must not take all the memory;
    a big sheet is fine (it is streamed)."""
    monkeypatch.setattr(xlsxsource, "MAX_PART", 20_000)
    bomb = padded(LIBREOFFICE, tmp_path / "bomb.xlsx", {"xl/sharedStrings.xml": 50_000})
    assert bomb.stat().st_size < 20_000
    with pytest.raises(csvsource.CsvError, match="xl/sharedStrings.xml unpacks to 50,000 "
                       "bytes; at most 20,000 are read"):
        xlsxsource.open_xlsx(bomb)
    big = padded(LIBREOFFICE, tmp_path / "big.xlsx", {"xl/worksheets/sheet1.xml": 100_000})
    info, rows, _ = read(big)
    assert len(rows) == 5


# --- template fallbacks and empty columns -------------------------------------------------------

def test_empty_template_columns_are_warned_by_row_and_strict_refuses(tmp_path):
    opts = BroadcastOptions(csv_path=LIBREOFFICE, template="Halo {name}, {order_id}")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    plan = run_preflight(info, template, opts, journal)
    (warning,) = plan.warnings
    assert (warning["type"], warning["column"], warning["count"], warning["rows"]) == (
        "empty_column", "name", 1, [5])
    assert "{name|Kak}" in warning["message"]
    assert refusal(plan, strict=False) is None
    err = refusal(plan, strict=True)
    assert err.exit_code == 2 and "{name} is empty in row(s) 5" in err.message
    journal.close()
    opts = BroadcastOptions(csv_path=LIBREOFFICE, template="Halo {name|Kak}, {order_id}")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "k.sqlite3")
    plan = run_preflight(info, template, opts, journal)
    assert plan.warnings == [] and refusal(plan, strict=True) is None
    assert [p["text"] for _, p in journal.preview(3)][2] == "Halo Kak, ORD-19"
    journal.close()


# --- journal: duplicates name their first row ----------------------------------------------------

def test_a_duplicate_names_the_row_it_repeats(tmp_path):
    path = workbook(tmp_path / "d.xlsx", [["to", "name"], [6281234567891, "A"],
                                          [6281234567892, "B"], ["6281234567891", "A"]])
    opts = BroadcastOptions(csv_path=path, template="Hi {name}")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    plan = run_preflight(info, template, opts, journal)
    assert plan.duplicates == 1
    assert journal.errors(("skipped",), 5) == [(4, "duplicate of row 2")]
    journal.close()


def test_a_version_1_journal_gains_the_first_row_of_each_message(tmp_path):
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE seen")
    db.execute("CREATE TABLE seen (hash BLOB PRIMARY KEY) WITHOUT ROWID")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    Journal(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION == 3
    assert "row" in {r[1] for r in db.execute("PRAGMA table_info(seen)")}
    db.close()


# --- the lean reader ----------------------------------------------------------------------------

def test_compact_strings_across_chunks(monkeypatch):
    monkeypatch.setattr(xlsxparse.CompactStrings, "CHUNK", 3)
    texts = ["", "Budi", "日本 👋", "a" * 1000, "x", "", "Line1\nLine2"]
    table = xlsxparse.CompactStrings()
    for text in texts:
        table.append(text)
    table.done()
    assert len(table) == len(texts) and [table[i] for i in range(len(texts))] == texts
    with pytest.raises(IndexError):
        table[len(texts)]
    with pytest.raises(IndexError):
        table[-1]


def test_without_openpyxl_internals_the_public_reader_gives_the_same_rows(monkeypatch):
    """If a later openpyxl moves the parts reached into, rows are the same (heavier, and a
    formula never calculated reads as empty)."""
    expected = read(LIBREOFFICE)[1]
    for name in ("openpyxl.reader.excel", "openpyxl.worksheet._reader"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))  # nothing to import
    with pytest.raises(ImportError):
        from openpyxl.reader.excel import ExcelReader  # noqa: F401
    assert read(LIBREOFFICE)[1] == expected
