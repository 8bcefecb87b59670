"""CSV reading, templates and the journal, without a network."""

import codecs
import json

import pytest

from cloudchat_cli.services.broadcast import csvsource
from cloudchat_cli.services.broadcast.journal import Journal
from cloudchat_cli.services.broadcast.plan import BroadcastOptions, prepare, run_preflight
from cloudchat_cli.services.broadcast.template import TemplateError, parse_template


def write(tmp_path, content, name="c.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def read_all(path, delimiter=None):
    info = csvsource.open_csv(path, delimiter)
    return info, list(csvsource.rows(info))


@pytest.mark.parametrize(("content", "delimiter"), [
    ("to,name\n1,a\n", ","), ("to;name\n1;a\n", ";"), ("to\tname\n1\ta\n", "\t"),
    ('"to;x",name\n1,a\n', ","),
])
def test_delimiter_sniffed(tmp_path, content, delimiter):
    assert csvsource.open_csv(write(tmp_path, content)).delimiter == delimiter


def test_bom_quotes_newlines_and_row_numbers(tmp_path):
    path = write(tmp_path, codecs.BOM_UTF8 + b'to,text\n1,"Halo, ""kamu""\nbaris 2"\n\n2,b\n'
)
    info, rows = read_all(path)
    assert info.header == ["to", "text"]
    assert rows == [(2, {"to": "1", "text": 'Halo, "kamu"\nbaris 2'}),
                    (4, {"to": "2", "text": "b"})]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (codecs.BOM_UTF32_LE + "to\n1\n".encode("utf-32-le"), "UTF-32"),
    (b"to,name\n1,\xe9t\xe9\n", "row 2 is not UTF-8"),
    (b"to,name\n1,a\n2,b,c\n", "row 3 has 3 fields, the header has 2"),
    (b"to,name\n1,a\x00b\n", "row 2"),
    (b"to,to\n1,2\n", "column name 'to' twice"),
    (b"to,\n1,2\n", "row 2, column 2 has a value but no header name"),
    (b",to\n1,2\nx,3\n", "row 3, column 1 has no header name and holds 'x'"),
    (b"to,,name\n1,2,3\n", "row 1, column 2 has an empty header name"),
    (b"to,name\n1,a\r2,b\xff\n", "row 3 is not UTF-8"),
    (b"to,name\n1,\"" + b"x" * (10 * 1024 * 1024) + b"\"\n", "larger than 64 KiB"),
])
def test_bad_csvs_name_the_row(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(csvsource.CsvError, match=message):
        read_all(path)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(csvsource.CsvError, match="is a directory"):
        csvsource.open_csv(tmp_path)
    with pytest.raises(csvsource.CsvError, match="no such file"):
        csvsource.open_csv(tmp_path / "nope.csv")


def test_many_columns(tmp_path):
    header = ",".join(["to"] + [f"c{i}" for i in range(999)])
    with pytest.raises(csvsource.CsvError, match="1000 columns"):
        csvsource.open_csv(write(tmp_path, header + "\n"))


def test_template_rendering_and_errors():
    t = parse_template("Halo {name}, {{literal}} {order id}")
    assert t.render({"name": "Budi", "order id": "7"}) == "Halo Budi, {literal} 7"
    with pytest.raises(TemplateError, match=r"\{nama\}"):
        parse_template("Halo {nama}").check_columns(["to", "name"])
    for bad in ["{name.__class__}", "{x[0]}", "{", "Halo }", "{name:>999999999}", "{}", "{0}",
                "{name!r}"]:
        with pytest.raises(TemplateError):
            parse_template(bad)


def test_template_fallbacks():
    t = parse_template("Halo {name|Kak}, pesanan {order|-} {note|}{ x | Bapak/Ibu. }")
    assert t.columns == ["name", "order", "note", "x"]
    assert t.bare_columns == []
    assert t.render({"name": "Budi", "order": "7", "note": "!", "x": "Ani"}) == (
        "Halo Budi, pesanan 7 !Ani")
    # empty or only spaces: the fallback; {note|} says empty is fine
    assert t.render({"name": "", "order": "  ", "note": "", "x": ""}) == (
        "Halo Kak, pesanan - Bapak/Ibu.")
    t = parse_template("Hi {name}, {name|there} {city}")
    assert t.bare_columns == ["name", "city"]
    for bad in ["{|Kak}", "{name.x|Kak}", "{name[0]|Kak}", "{name|Kak:>9}", "{name|Kak!r}",
                "{name:>9|Kak}"]:
        with pytest.raises(TemplateError):
            parse_template(bad)


def test_preflight_marks_invalid_and_duplicates(tmp_path):
    path = write(tmp_path, "to,name,channel\n6281234567890,A,\n6281234567890,A,\n0812,B,\n"
                 "@bob_the_bot,C,tg\n12345,D,sms\n")
    options = BroadcastOptions(csv_path=path, template="Hi {name}")
    info, tmpl = prepare(options)
    journal = Journal(tmp_path / "j.sqlite3")
    plan = run_preflight(info, tmpl, options, journal)
    assert (plan.rows, plan.valid, plan.invalid, plan.duplicates) == (5, 2, 2, 1)
    assert plan.per_channel == {"telegram": 1, "whatsapp": 1}
    assert [e for _, e in plan.errors] == [
        "row 4, column 'to': '0812' is a local number",
        "row 6, column 'channel': unknown channel 'sms': use one of whatsapp, telegram, "
        "instagram, messenger (or wa, tg, ig, fb)",
    ]
    assert journal.check() == "ok"


def test_preflight_requires_to_column_and_a_message(tmp_path):
    path = write(tmp_path, "phone,name\n1,a\n")
    with pytest.raises(csvsource.CsvError, match="no 'to' column"):
        prepare(BroadcastOptions(csv_path=path, template="x"))
    path = write(tmp_path, "to,name\n1,a\n", "b.csv")
    with pytest.raises(Exception, match="no message"):
        prepare(BroadcastOptions(csv_path=path))


def test_header_only_is_an_error(tmp_path):
    path = write(tmp_path, "to,name\n")
    options = BroadcastOptions(csv_path=path, template="x")
    info, tmpl = prepare(options)
    with pytest.raises(csvsource.CsvError, match="no data rows"):
        run_preflight(info, tmpl, options, Journal(tmp_path / "j.sqlite3"))


def test_journal_crash_recovery_and_requeue(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    payload = json.dumps({"channel": "whatsapp", "to": "1", "type": "text", "text": "x"})
    journal.add_rows([(r, "1", "whatsapp", payload, "pending", None) for r in (2, 3, 4)],
                     [None, None, None])
    journal.mark(2, "sent", message_id="msg_1", http_status=201)
    journal.mark(3, "sending")
    journal.close()
    journal = Journal(tmp_path / "j.sqlite3")  # as after a crash
    assert journal.recover_crashed() == 1
    counts = journal.counts()
    assert (counts["sent"], counts["unknown"], counts["pending"]) == (1, 1, 1)
    assert [r for r, _ in journal.pending(0)] == [4]
    assert journal.requeue(["unknown"]) == 1
    assert [r for r, _ in journal.pending(0)] == [3, 4]
