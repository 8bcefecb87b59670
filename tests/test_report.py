"""Broadcast reports read back by what people open them with: openpyxl (for Excel) and csv."""

import codecs
import csv
from pathlib import Path

import openpyxl
import pytest

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast import report as reporting
from cloudchat_cli.services.broadcast.journal import Journal
from cloudchat_cli.services.broadcast.plan import BroadcastOptions, prepare, run_preflight

FIXTURES = Path(__file__).parent / "fixtures"
OURS = ["row", "channel", "recipient", "status", "message_id", "http_status", "error"]
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def planned(tmp_path, source, template="Halo {name}", **options):
    opts = BroadcastOptions(csv_path=source, template=template, **options)
    info, tmpl = prepare(opts)
    journal = Journal(tmp_path / "j.sqlite3")
    run_preflight(info, tmpl, opts, journal)
    return info, journal


def mark_some(journal):
    (first, _), (second, _), *_ = journal.pending(0)
    journal.mark(first, "sent", message_id="=msg_1", http_status=201)
    journal.mark(second, "failed", http_status=422, error="-bad recipient")
    return first, second


def sheet_rows(path):
    book = openpyxl.load_workbook(path)  # the full reader: cell types and formats as Excel sees
    ws = book.active
    return ws, [[c for c in row] for row in ws.iter_rows()]


def test_xlsx_report_of_a_libreoffice_sheet(tmp_path):
    info, journal = planned(tmp_path, FIXTURES / "customers_rich_libreoffice.xlsx",
                            "Halo {greeting}")
    first, second = mark_some(journal)
    target = reporting.target(tmp_path / "hasil.xlsx", info)
    assert reporting.write(journal, target) == 5 and target.note is None
    ws, rows = sheet_rows(tmp_path / "hasil.xlsx")
    header = [c.value for c in rows[0]]
    assert header == info.header + OURS
    assert ws.freeze_panes == "A2"
    by_row = {r[header.index("row")].value: {h: c for h, c in zip(header, r, strict=False)}
              for r in rows[1:]}
    assert sorted(by_row) == [3, 4, 5, 7, 8]  # Excel's row numbers, as numbers
    sent = by_row[first]
    # the phone number, the leading-zero id and the message id: text cells, formatted as Text
    for name in ("to", "wa_lokal", "order_id", "recipient", "message_id"):
        assert sent[name].data_type == "s" and sent[name].number_format == "@", name
    assert (sent["to"].value, sent["wa_lokal"].value, sent["order_id"].value) == (
        "6281234567891", "081234567891", "00123")
    assert (sent["status"].value, sent["message_id"].value, sent["http_status"].value) == (
        "sent", "=msg_1", 201)  # "=msg_1" stays text: no formula in the workbook
    failed = by_row[second]
    assert (failed["status"].value, failed["error"].value) == ("failed", "-bad recipient")
    assert by_row[5]["name"].value in (None, "") and by_row[5]["greeting"].value == "Kak"
    assert all(c.data_type != "f" for r in rows for c in r)
    journal.close()


def test_csv_report_mirrors_a_semicolon_bom_input_and_carries_its_columns(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(codecs.BOM_UTF8 + b"to;name;order_id\r\n6281234567891;Budi;00123\r\n"
                       b"6281234567892;=cmd|' /C calc'!A0;ORD-2\r\n"
                       b"6281234567891;Budi;00123\r\n")
    info, journal = planned(tmp_path, source)
    mark_some(journal)
    out = tmp_path / "hasil.csv"
    assert reporting.write(journal, reporting.target(out, info)) == 3
    raw = out.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8) and b"\r\n" in raw
    with out.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    assert rows[0] == ["to", "name", "order_id", *OURS]
    assert all(not cell.startswith(FORMULA) for row in rows for cell in row)
    assert rows[1][:5] == ["6281234567891", "Budi", "00123", "2", "whatsapp"]
    assert rows[2][1] == "'=cmd|' /C calc'!A0"  # neutralised, one apostrophe
    assert rows[3][:4] == ["6281234567891", "Budi", "00123", "4"]
    assert rows[3][-1] == "duplicate of row 2"
    journal.close()


@pytest.mark.parametrize(("name", "encoding", "delimiter", "bom"), [
    ("lo_semi_utf8.csv", None, ";", False),
    ("lo_comma_utf8.csv", None, ",", False),
    ("lo_tab_utf16.csv", None, "\t", True),
    ("excel_cp1252_semi.csv", "cp1252", ";", True),  # written as UTF-8: the BOM tells Excel
])
def test_csv_report_dialect_follows_the_export(tmp_path, name, encoding, delimiter, bom):
    info, journal = planned(tmp_path, FIXTURES / name, encoding=encoding)
    out = tmp_path / "r.csv"
    reporting.write(journal, reporting.target(out, info))
    assert out.read_bytes().startswith(codecs.BOM_UTF8) == bom
    with out.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh, delimiter=delimiter))
    assert rows[0]["name"] == "Budi" and rows[0]["status"] == "pending"
    assert any(r["name"] == "Sàri Dewi" for r in rows)
    journal.close()


def test_a_sep_line_is_kept(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("sep=;\nto;name\n6281234567891;A\n", encoding="utf-8")
    info, journal = planned(tmp_path, source)
    out = tmp_path / "r.csv"
    reporting.write(journal, reporting.target(out, info))
    assert out.read_text(encoding="utf-8").splitlines()[:2] == [
        "sep=;", "to;name;" + ";".join(OURS)]
    journal.close()


def test_a_workbook_input_gives_a_comma_csv_with_bom(tmp_path):
    info, journal = planned(tmp_path, FIXTURES / "customers.xlsx")
    out = tmp_path / "r.csv"
    reporting.write(journal, reporting.target(out, info))
    with out.open(newline="", encoding="utf-8") as fh:
        assert fh.read(1) == "\ufeff"
        rows = list(csv.DictReader(fh))
    assert [r["to"] for r in rows][:2] == ["6281234567891", "6281234567892"]
    assert rows[3]["name"] == "Line1\nLine2"
    journal.close()


def test_an_input_changed_since_the_run_is_left_out_and_said(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("to,name\n6281234567891,A\n", encoding="utf-8")
    info, journal = planned(tmp_path, source)
    source.write_text("to,name\n6281234567899,Z\n", encoding="utf-8")
    target = reporting.target(tmp_path / "r.xlsx", info)
    reporting.write(journal, target)
    assert "changed or is gone since the broadcast started" in target.note
    _ws, rows = sheet_rows(tmp_path / "r.xlsx")
    assert [c.value for c in rows[0]] == OURS
    assert rows[1][2].value == "6281234567891"  # the journal's record, not the new file
    journal.close()


def test_report_names_refused_before_anything_is_sent(tmp_path):
    for name in ("r.xls", "r.xlsm", "r.ods"):
        with pytest.raises(UsageError, match="written as .xlsx or .csv"):
            reporting.target(tmp_path / name, None)
    with pytest.raises(UsageError, match="is a directory"):
        reporting.target(tmp_path, None)


def test_columns_named_like_ours_keep_both(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("to,status,name\n6281234567891,VIP,A\n", encoding="utf-8")
    info, journal = planned(tmp_path, source)
    out = tmp_path / "r.csv"
    reporting.write(journal, reporting.target(out, info))
    with out.open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["status"], row["cloudchat_status"]) == ("VIP", "pending")
    journal.close()


def test_control_characters_and_long_cells_fit_a_workbook(tmp_path):
    source = tmp_path / "in.csv"
    long = "x" * 40_000
    source.write_text(f"to,name,note\n6281234567891,A\x01B,{long}\n", encoding="utf-8")
    info, journal = planned(tmp_path, source)
    reporting.write(journal, reporting.target(tmp_path / "r.xlsx", info))
    _ws, rows = sheet_rows(tmp_path / "r.xlsx")
    assert rows[1][1].value == "A\\x01B"
    assert len(rows[1][2].value) == reporting.XLSX_CELL and rows[1][2].value.endswith("…")
    journal.close()


def test_more_rows_than_a_sheet_holds_go_on_to_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(reporting, "XLSX_ROWS", 3)  # 2 data rows a sheet
    source = tmp_path / "in.csv"
    source.write_text("to,name\n" + "".join(f"62812345678{i:02d},N{i}\n" for i in range(5)),
                      encoding="utf-8")
    info, journal = planned(tmp_path, source)
    assert reporting.write(journal, reporting.target(tmp_path / "r.xlsx", info)) == 5
    book = openpyxl.load_workbook(tmp_path / "r.xlsx")
    assert book.sheetnames == ["report", "report (2)", "report (3)"]
    names = [row[1] for ws in book for row in ws.iter_rows(min_row=2, values_only=True)]
    assert names == [f"N{i}" for i in range(5)]
    assert all(ws["A1"].value == "to" for ws in book)
    journal.close()


def test_an_empty_report_is_a_header(tmp_path):
    info, journal = planned(tmp_path, FIXTURES / "customers.xlsx")
    journal.reset_rows()
    reporting.write(journal, reporting.target(tmp_path / "r.xlsx", info))
    _ws, rows = sheet_rows(tmp_path / "r.xlsx")
    assert len(rows) == 1 and rows[0][0].value == "to"
    journal.close()


# --- the report target is checked before anything is sent ---------------------------------------


def _info(path):
    return prepare(BroadcastOptions(csv_path=path, template="Halo {name}"))[0]


@pytest.mark.parametrize("how", ["same", "relative", "symlink"])
def test_report_that_is_the_input_file_is_refused(tmp_path, monkeypatch, how):
    source = tmp_path / "kontak.csv"
    source.write_text("to,name\n+6281234567890,Budi\n", encoding="utf-8")
    before = source.read_bytes()
    info = _info(source)
    if how == "relative":
        monkeypatch.chdir(tmp_path)
        target = Path("kontak.csv")
    elif how == "symlink":
        target = tmp_path / "link.csv"
        target.symlink_to(source)
    else:
        target = source
    with pytest.raises(UsageError) as refused:
        reporting.target(target, info)
    assert refused.value.exit_code == 2
    assert "is the input file" in refused.value.message
    assert source.read_bytes() == before


def test_report_that_is_the_input_workbook_is_refused(tmp_path):
    book = openpyxl.Workbook()
    book.active.append(["to", "name"])
    book.active.append(["+6281234567890", "Budi"])
    book.create_sheet("other").append(["keep me"])
    source = tmp_path / "kontak.xlsx"
    book.save(source)
    with pytest.raises(UsageError, match="is the input file"):
        reporting.target(source, _info(source))
    assert openpyxl.load_workbook(source).sheetnames == ["Sheet", "other"]


def test_report_in_a_missing_folder_is_refused_at_once(tmp_path):
    source = tmp_path / "kontak.csv"
    source.write_text("to,name\n+6281234567890,Budi\n", encoding="utf-8")
    with pytest.raises(UsageError, match="does not exist") as refused:
        reporting.target(tmp_path / "nope" / "r.csv", _info(source))
    assert refused.value.exit_code == 2


def _lock_folder(folder: Path) -> list[str] | None:
    """Make ``folder`` unwritable even for root (CI runs as root): the immutable attribute
    where the filesystem has it, else mode 0555 for anyone else. The command that undoes it,
    or None when neither works here."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0:
        folder.chmod(0o555)
        return ["chmod", "755", str(folder)]
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)],
                                                 capture_output=True).returncode == 0:
        return ["chattr", "-i", str(folder)]
    return None


@pytest.mark.e2e
def test_report_in_a_read_only_folder_is_refused_at_once_and_leaves_nothing(tmp_path):
    import subprocess

    source = tmp_path / "kontak.csv"
    source.write_text("to,name\n+6281234567890,Budi\n", encoding="utf-8")
    locked = tmp_path / "ro"
    locked.mkdir()
    undo = _lock_folder(locked)
    if undo is None:
        pytest.skip("running as root on a filesystem without chattr +i: no folder is read-only")
    try:
        with pytest.raises(UsageError, match="cannot write in") as refused:
            reporting.target(locked / "r.csv", _info(source))
        assert refused.value.exit_code == 2
        assert list(locked.iterdir()) == []
    finally:
        subprocess.run(undo, check=True)


def test_a_writable_report_target_leaves_no_probe_behind(tmp_path):
    source = tmp_path / "kontak.csv"
    source.write_text("to,name\n+6281234567890,Budi\n", encoding="utf-8")
    reporting.target(tmp_path / "r.csv", _info(source))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kontak.csv"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_report_in_an_unwritable_folder_is_refused_even_for_root(tmp_path):
    source = tmp_path / "kontak.csv"
    source.write_text("to,name\n+6281234567890,Budi\n", encoding="utf-8")
    with pytest.raises(UsageError, match="cannot write in /proc") as refused:
        reporting.target(Path("/proc/cloudchat-report.csv"), _info(source))
    assert refused.value.exit_code == 2
