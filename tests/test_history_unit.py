"""Unit tests: a broadcast's history file, the message digest, opt-out and exclude files."""

import json
import sqlite3

import pytest

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services import optout
from cloudchat_cli.services.broadcast import history as hist
from cloudchat_cli.services.broadcast import plan as planning
from cloudchat_cli.services.broadcast import runs
from cloudchat_cli.services.broadcast.journal import Journal

P = {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "Halo"}


def test_digest_names_channel_recipient_and_message_only():
    assert planning._digest(P) == hist.message_digest(P)  # duplicates and history agree
    assert hist.message_digest({**P, "reference": "x"}) == hist.message_digest(P)
    for change in ({"text": "Halo!"}, {"to": "6281234567891"}, {"channel": "telegram"},
                   {"type": "image", "media": {"url": "https://x/y.png"}}):
        assert hist.message_digest({**P, **change}) != hist.message_digest(P)


def journal_with(path, rows, *, legacy=False):
    """A journal whose rows are (payload, state, updated); ``legacy``: schema v0."""
    jr = Journal(path)
    jr.add_rows([(i + 2, p["to"], p["channel"], json.dumps(p), "pending", None)
                 for i, (p, _s, _t) in enumerate(rows)], [None] * len(rows))
    jr.close()
    db = sqlite3.connect(path)
    for i, (_p, state, at) in enumerate(rows):
        db.execute("UPDATE rows SET state = ?, updated = ? WHERE row = ?", (state, at, i + 2))
    if legacy:
        db.execute("ALTER TABLE rows DROP COLUMN digest")
        db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()


def sent_count(h):
    db = sqlite3.connect(h.path)
    try:
        return db.execute("SELECT COUNT(*), MAX(at) FROM sent").fetchone()
    finally:
        db.close()


def test_ingest_reads_sent_rows_of_old_and_new_journals_keeping_the_latest_time(isolated):
    folder = isolated / "state" / "broadcasts"
    other = {**P, "to": "6281234567891"}
    journal_with(folder / "k.done-1.sqlite3", [(P, "sent", 100.0), (other, "failed", 100.0)],
                 legacy=True)
    journal_with(folder / "k.done-2.sqlite3", [(P, "sent", 200.0), (other, "pending", 0.0)])
    h = hist.History("k", folder)
    try:
        h.sync()
        assert sent_count(h) == (1, 200.0)  # only `sent` rows, one entry per message
        h.sync()  # archives are read once
        assert sent_count(h) == (1, 200.0)
        assert h.ingest(folder / "missing.sqlite3") == 0
        assert not (folder / "missing.sqlite3").exists()  # never created by ATTACH
    finally:
        h.close()
    db = sqlite3.connect(folder / "k.done-1.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0  # history only reads
    db.close()


def test_a_registered_journal_is_read_again_as_it_grows(isolated):
    folder = isolated / "state" / "broadcasts"
    mine = isolated / "elsewhere" / "mine.sqlite3"
    journal_with(mine, [(P, "pending", 0.0)])
    h = hist.History("k", folder)
    try:
        h.register(mine)
        h.sync()
        assert sent_count(h)[0] == 0
        db = sqlite3.connect(mine)
        db.execute("UPDATE rows SET state = 'sent', updated = 5")
        db.commit()
        db.close()
        h.sync()
        assert sent_count(h)[0] == 1
        h.sync(current=mine)  # the journal about to run is not read
    finally:
        h.close()


def test_an_unreadable_archive_stops_the_run_naming_it(isolated):
    folder = isolated / "state" / "broadcasts"
    folder.mkdir(parents=True)
    (folder / "k.done-1.sqlite3").write_bytes(b"not a database" * 100)
    h = hist.History("k", folder)
    try:
        with pytest.raises(hist.HistoryError, match="k.done-1.sqlite3"):
            h.sync()
    finally:
        h.close()


def test_withhold_marks_only_pending_rows_sent_before(isolated):
    folder = isolated / "state" / "broadcasts"
    journal_with(folder / "k.done-1.sqlite3", [(P, "sent", 1.7e9)])
    new = folder / "new.sqlite3"
    journal_with(new, [(P, "pending", 0.0), ({**P, "text": "Baru"}, "pending", 0.0)])
    jr = Journal(new)
    try:
        counted = runs.withhold(jr, key="k", profile="default", again=True, fresh=True)
        assert (counted.already_sent, counted.last_sent_at) == (1, 1.7e9)
        assert jr.counts()["pending"] == 2  # --again: counted, still sent
        held = runs.withhold(jr, key="k", profile="default", again=False, fresh=True)
        assert held.already_sent == 1 and jr.counts()["already_sent"] == 1
        assert jr.counts()["pending"] == 1
    finally:
        jr.close()


def test_list_files_plain_csv_and_hostile(tmp_path):
    plain = tmp_path / "a.txt"
    plain.write_text("# comment\n\n 6281234567890 \n@bob\n")
    assert list(optout.read_list_file(plain, "whatsapp")) == [
        (3, "whatsapp", "6281234567890", ""), (4, "whatsapp", "@bob", "")]
    sheet = tmp_path / "b.csv"
    sheet.write_text('\ufeffName,TO,note\n"Ani, Bu",+62 812 1,"said ""stop"""\n,,\n')
    assert list(optout.read_list_file(sheet, "whatsapp")) == [
        (2, "whatsapp", "+62 812 1", 'said "stop"')]
    nocol = tmp_path / "c.csv"
    nocol.write_text("phone,name\n6281234567890,Ani\n")
    with pytest.raises(UsageError, match="'to' column"):
        list(optout.read_list_file(nocol, "whatsapp"))
    binary = tmp_path / "d.txt"
    binary.write_bytes(b"\xff\xfe6\x002\x00")
    with pytest.raises(UsageError, match="not UTF-8"):
        list(optout.read_list_file(binary, "whatsapp"))
    with pytest.raises(UsageError, match="cannot read"):
        list(optout.read_list_file(tmp_path, "whatsapp"))
    assert list(optout.read_list_file(_empty(tmp_path), "whatsapp")) == []


def _empty(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    return path


def test_exclude_forms_cover_every_channel_a_value_is_valid_for(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("+62 812-3456-7890\n12345678\n@alice\n")
    forms = set(runs.exclude_recipients(path))
    assert {"6281234567890", "12345678", "@alice"} <= forms
    bad = tmp_path / "bad.csv"
    bad.write_text("to,channel\n0812,wa\n")
    with pytest.raises(UsageError, match="line 2"):
        runs.check_exclude(bad)


def test_optout_entries_are_normalised_and_imports_all_or_nothing(isolated):
    lst = optout.OptoutList("default", "62")
    try:
        assert lst.add("wa", "0812-3456-7890")[2] is True
        assert lst.add("whatsapp", "+62 812 3456 7890")[2] is False  # the same entry
        with pytest.raises(UsageError, match="line 3"):
            lst.import_rows([(2, "wa", "6281111111111", ""), (3, "wa", "bogus", "")])
        assert lst.count() == 1
        rows = [(1, "tg", "@alice_bot", "n"), (2, "wa", "6281234567890", "")]
        assert lst.import_rows(rows) == (1, 1)
    finally:
        lst.close()
    assert optout.optout_path("../evil").name.startswith("p-")
    assert optout.optout_path("shop").name == "shop.sqlite3"


def test_export_is_spreadsheet_safe_and_imports_back_exactly(isolated):
    import io

    lst = optout.OptoutList("default")
    try:
        lst.add("tg", "-1001234567890", "=HYPERLINK(\"http://x\")")
        lst.add("tg", "@alice_bot", "'quoted")
        out = io.StringIO()
        assert optout.export_csv(lst.entries(), out) == 2
    finally:
        lst.close()
    text = out.getvalue()
    assert "'-1001234567890" in text and "'=HYPERLINK" in text and "''quoted" in text
    path = isolated / "export.csv"
    path.write_text(text)
    assert [(ch, to, note) for _l, ch, to, note in optout.read_list_file(path, "whatsapp")] == [
        ("telegram", "-1001234567890", '=HYPERLINK("http://x")'),
        ("telegram", "@alice_bot", "'quoted")]


TG = {"channel": "telegram", "to": "@DAVESMITH", "type": "text", "text": "Promo"}


def test_telegram_usernames_are_one_entry_in_any_case(isolated):
    """Telegram usernames are case-insensitive: @DaveSmith opted out is @davesmith too."""
    lst = optout.OptoutList("default")
    try:
        assert lst.add("tg", "@DaveSmith")[2] is True
        assert lst.add("telegram", "@davesmith")[2] is False
        assert [e.recipient for e in lst.entries()] == ["@DaveSmith"]  # shown as written
        assert lst.find("telegram", "@DAVESMITH") is not None
        assert lst.remove("tg", "@davesmith")[2] is True and lst.count() == 0
        lst.add("tg", "@DaveSmith")
        lst.add("wa", "6281234567890")
    finally:
        lst.close()
    with pytest.raises(optout.OptedOut):
        optout.check_send("default", {"channel": "telegram", "to": "@davesmith"})
    optout.check_send("default", {"channel": "whatsapp", "to": "6281234567891"})
    folder = isolated / "state" / "broadcasts"
    path = folder / "tg.sqlite3"
    other = {**TG, "to": "@someone_else"}
    journal_with(path, [(TG, "pending", 0.0), (other, "pending", 0.0)])
    exclude = isolated / "exclude.txt"
    exclude.write_text("@SomeOne_Else\n")
    jr = Journal(path)
    try:
        held = runs.withhold(jr, key="k", profile="default", again=False, fresh=False,
                             exclude=exclude)
        assert (held.opted_out, held.excluded) == (1, 1)
        assert jr.counts()["pending"] == 0
    finally:
        jr.close()


def test_keyword_opt_out_of_a_telegram_username_matches_any_case(isolated):
    handle = optout.keyword_handler("default", ["stop"], lambda _m: None, now=lambda: 1.7e9)
    handle({"event": "message.received", "id": "evt_1", "channel": "telegram",
            "data": {"from": "@Dave", "text": "STOP"}})
    with pytest.raises(optout.OptedOut):
        optout.check_send("default", {"channel": "telegram", "to": "@dave"})


def test_a_version_1_opt_out_list_is_migrated_in_place(isolated):
    path = optout.optout_path("default")
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE optout (channel TEXT NOT NULL, recipient TEXT NOT NULL, added_at REAL "
        "NOT NULL, note TEXT NOT NULL DEFAULT '', PRIMARY KEY (channel, recipient)) "
        "WITHOUT ROWID; PRAGMA user_version = 1;")
    db.executemany("INSERT INTO optout VALUES (?, ?, ?, ?)", [
        ("telegram", "@dave", 2.0, "later"), ("telegram", "@Dave", 1.0, "first"),
        ("whatsapp", "6281234567890", 1.0, "")])
    db.commit()
    db.close()
    lst = optout.OptoutList("default")
    try:
        assert [(e.recipient, e.note) for e in lst.entries()] == [
            ("@Dave", "first"), ("6281234567890", "")]
        assert lst.find("telegram", "@DAVE") is not None
    finally:
        lst.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == optout.VERSION == 2
    db.close()
