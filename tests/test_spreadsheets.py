"""Broadcast CSVs as LibreOffice, Excel, Google Sheets and pandas write them.

The files in tests/fixtures/ are real exports (see its README), read here unchanged; the
variants made in the tests (CR-only line ends, a ``sep=`` line) change only what that program
would change.
"""

import codecs
import json
from pathlib import Path

import pytest

from cloudchat_cli.services.broadcast import csvsource
from cloudchat_cli.services.broadcast.journal import Journal
from cloudchat_cli.services.broadcast.plan import (
    BroadcastOptions,
    invalid_rows,
    prepare,
    run_preflight,
)

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ["Budi", "Sàri Dewi", 'Eko "Jago" Prasetyo', "Line1\nLine2", "Rina, S.Kom"]


def read(path, **kwargs):
    info = csvsource.open_csv(path, kwargs.pop("delimiter", None), kwargs.pop("encoding", None))
    stats = csvsource.RowStats()
    return info, list(csvsource.rows(info, stats)), stats


@pytest.mark.parametrize(("name", "encoding", "delimiter"), [
    ("lo_comma_utf8.csv", None, ","),
    ("lo_semi_utf8.csv", None, ";"),
    ("lo_semi_cp1252.csv", "cp1252", ";"),
    ("lo_tab_utf16.csv", None, "\t"),
    ("excel_utf8_bom.csv", None, ","),
    ("excel_cp1252_semi.csv", "cp1252", ";"),
])
def test_exports_read_the_same(name, encoding, delimiter):
    info, rows, stats = read(FIXTURES / name, encoding=encoding)
    assert info.delimiter == delimiter
    assert info.header == ["to", "name", "order_id", "note"]
    assert [number for number, _ in rows][:5] == [2, 3, 4, 5, 6]  # row 5 spans two lines of text
    assert [values["name"].replace("\r\n", "\n") for _, values in rows][:5] == NAMES
    assert rows[0][1]["to"] == "6281234567891"
    assert rows[1][1]["order_id"] == "00123"
    assert stats.empty == 0


@pytest.mark.parametrize("name", ["lo_semi_cp1252.csv", "excel_cp1252_semi.csv"])
def test_legacy_encoding_is_refused_naming_the_option(name):
    with pytest.raises(csvsource.CsvError, match=r"row 3 is not UTF-8 \(byte value 0xe0\)") as e:
        read(FIXTURES / name)
    assert "--encoding cp1252" in e.value.hint


def test_latin1_and_unknown_encodings(tmp_path):
    _, rows, _ = read(FIXTURES / "lo_semi_cp1252.csv", encoding="latin-1")
    assert rows[1][1]["name"] == "Sàri Dewi"
    with pytest.raises(csvsource.CsvError, match="unknown --encoding 'klingon'"):
        read(FIXTURES / "lo_semi_cp1252.csv", encoding="klingon")
    with pytest.raises(csvsource.CsvError, match="not a text encoding"):
        read(FIXTURES / "lo_semi_cp1252.csv", encoding="base64")


def test_utf16_without_encoding_option_and_its_bom_wins():
    info, rows, _ = read(FIXTURES / "lo_tab_utf16.csv", encoding="cp1252")
    assert info.encoding == "utf-16"
    assert rows[-1][1]["name"] == "日本 👋"


def test_cr_only_line_ends_excel_for_mac(tmp_path):
    original = (FIXTURES / "excel_utf8_bom.csv").read_bytes()
    path = tmp_path / "mac.csv"
    path.write_bytes(original.replace(b"\r\n", b"\r"))
    _, rows, _ = read(path)
    assert [n for n, _ in rows] == [2, 3, 4, 5, 6]
    assert rows[3][1]["name"] == "Line1\nLine2"  # the quoted newline was LF in the original
    assert rows[4][1]["name"] == "Rina, S.Kom"


def test_crlf_split_across_read_chunks_adds_no_row(tmp_path, monkeypatch):
    monkeypatch.setattr(csvsource, "CHUNK", 7)
    _, rows, stats = read(FIXTURES / "excel_utf8_bom.csv")
    assert [n for n, _ in rows] == [2, 3, 4, 5, 6] and stats.empty == 0


def test_excel_sep_line(tmp_path):
    path = tmp_path / "sep.csv"
    path.write_bytes(b"sep=;\r\n" + (FIXTURES / "excel_cp1252_semi.csv").read_bytes())
    info, rows, _ = read(path, encoding="cp1252")
    assert (info.delimiter, info.header[0]) == (";", "to")
    assert rows[0] == (2, {"to": "6281234567891", "name": "Budi", "order_id": "ORD-17",
                           "note": "plain"})
    path.write_bytes(codecs.BOM_UTF8 + b"sep=|\nto|name\n6281234567891|a, b\n")
    info, rows, _ = read(path)
    assert rows == [(2, {"to": "6281234567891", "name": "a, b"})]


def test_pandas_index_column_is_ignored_and_said_once():
    info, rows, _ = read(FIXTURES / "pandas_default.csv")
    assert info.header == ["to", "name", "order_id"]
    assert info.index_column and "index column" in info.notes[0]
    assert rows[0] == (2, {"to": "6281234567891.0", "name": "Budi", "order_id": "ORD-1"})


def test_sheets_trailing_empty_columns_and_empty_rows():
    info, rows, stats = read(FIXTURES / "gsheets_artifacts.csv")
    assert info.header == ["to", "name", "order_id"]
    assert [n for n, _ in rows] == [2, 3, 4, 5, 6, 7]
    assert (stats.empty, stats.empty_examples) == (2, [8, 9])
    assert "3 trailing column(s)" in info.notes[0]


def preflight(tmp_path, name, **options):
    opts = BroadcastOptions(csv_path=FIXTURES / name, template="Halo {name}", **options)
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    plan = run_preflight(info, template, opts, journal)
    return plan, invalid_rows(journal, opts), journal


@pytest.mark.parametrize("default_code", ["62", ""])
def test_sheets_artefacts_are_listed_by_row_and_column(tmp_path, default_code):
    # without a default, the refused 6.28123E+12 rows still show the sheet is Indonesian
    plan, invalid, journal = preflight(tmp_path, "gsheets_artifacts.csv",
                                       default_country_code=default_code)
    reasons = {item["row"]: item["reason"] for item in invalid}
    assert [item["column"] for item in invalid] == ["to"] * 4
    assert sorted(reasons) == [2, 3, 6, 7]
    assert "scientific notation" in reasons[2] and "scientific notation" in reasons[6]
    assert "apostrophe" in reasons[3]
    assert "scientific notation" in reasons[7]
    assert (plan.valid, plan.empty_rows) == (2, 2)
    (warning,) = plan.warnings
    assert (warning["country_code"], warning["expected"], warning["rows"]) == ("81", "62", [4])
    assert "081234567893 was stored as the number 81234567893" in warning["message"]
    journal.close()


def test_pandas_floats_are_refused_not_sent(tmp_path):
    plan, invalid, journal = preflight(tmp_path, "pandas_default.csv")
    assert [(i["row"], i["column"]) for i in invalid] == [(2, "to"), (3, "to"), (4, "to")]
    assert "decimal zero" in invalid[0]["reason"] and "empty" in invalid[2]["reason"]
    assert plan.valid == 0
    journal.close()


def test_a_lost_leading_zero_stands_out_from_the_majority(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_text("to,name\n6281234567891,a\n6281234567892,b\n81234567893,c\n"
                    "6281234567894,d\n")
    opts = BroadcastOptions(csv_path=path, template="x {name}")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    (warning,) = run_preflight(info, template, opts, journal).warnings
    assert (warning["country_code"], warning["expected"], warning["rows"]) == ("81", "62", [4])
    assert "most rows" in warning["message"] and "leading 0" in warning["message"]
    journal.close()


def test_country_code_against_the_default(tmp_path):
    path = tmp_path / "cc.csv"
    path.write_text("to,name\n081234567891,a\n6281234567892,b\n14155550100,c\n")
    opts = BroadcastOptions(csv_path=path, template="x {name}", default_country_code="62")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    plan = run_preflight(info, template, opts, journal)
    assert [(w["country_code"], w["rows"]) for w in plan.warnings] == [("1", [4])]
    assert "default_country_code" in plan.warnings[0]["message"]
    meta = json.loads(journal.meta()["plan_extra"])
    assert meta["warnings"] == plan.warnings
    journal.close()


def test_mixed_countries_without_a_majority_are_not_warned(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("to,name\n6281234567891,a\n14155550100,b\n447700900123,c\n")
    opts = BroadcastOptions(csv_path=path, template="x {name}")
    info, template = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    assert run_preflight(info, template, opts, journal).warnings == []
    journal.close()


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64 * 1024])
@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r"])
def test_any_chunking_gives_the_same_rows(tmp_path, monkeypatch, chunk, ending):
    # \x0c and \u2028 inside a field are not line ends for CSV (str.splitlines thinks they are)
    content = ending.join([b"to,text", b'6281234567891,"a\x0cb"', b"",
                           b"6281234567892,c\xe2\x80\xa8d", b'6281234567893,"x' + ending + b'y"',
                           b""])
    path = tmp_path / "c.csv"
    path.write_bytes(content)
    monkeypatch.setattr(csvsource, "CHUNK", chunk)
    _, rows, stats = read(path)
    newline = ending.decode()
    assert rows == [(2, {"to": "6281234567891", "text": "a\x0cb"}),
                    (4, {"to": "6281234567892", "text": "c\u2028d"}),
                    (5, {"to": "6281234567893", "text": f"x{newline}y"})]
    assert stats.empty == 1
