"""Delivery tracking (``broadcast track``) in process: merging, incremental reads, summary."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from cloudchat_cli.core.durations import parse_duration
from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.services.broadcast import tracking
from cloudchat_cli.services.broadcast.journal import VERSION, Journal
from cloudchat_cli.services.webhooks.store import EventStore, event_key

# journal-v1.sqlite3: made by `cloudchat broadcast people.csv -t "Halo {name}" --yes` with the
# release before delivery tracking (schema v1), against the sandbox: 4 rows sent, one to a
# number ending in 9999.
FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_800_000_000


def make_journal(path: Path, rows: list[tuple[str, str, str]], *, accepted_at=T0) -> Journal:
    """rows: (recipient, channel, message_id or '' for a row the API refused)."""
    jr = Journal(path)
    batch = [(i + 2, to, ch, json.dumps({"to": to, "text": f"m{i}", "channel": ch}),
              "pending", None) for i, (to, ch, _) in enumerate(rows)]
    jr.add_rows(batch, [None] * len(batch))
    for i, (_, _, mid) in enumerate(rows):
        if mid:
            jr.mark(i + 2, "sent", message_id=mid, http_status=201)
        else:
            jr.mark(i + 2, "failed", http_status=400, error="invalid")
    jr.tx(lambda db: db.execute("UPDATE rows SET updated = ?", (accepted_at,)))
    return jr


class Events:
    def __init__(self, directory: Path):
        self.store = EventStore(directory)
        self.n = 0

    def status(self, mid, status, ts, error=None, *, event_id=None):
        self.n += 1
        data = {"message_id": mid, "status": status}
        if error is not None:
            data["error"] = error
        return self.raw({"event": "message.status", "id": event_id or f"evt_{self.n}",
                         "timestamp": ts, "channel": "whatsapp", "session_id": "s",
                         "data": data})

    def raw(self, event: dict) -> Path:
        body = json.dumps(event).encode()
        return self.store.save(event_key(event.get("id"), body), body,
                               {"id": event.get("id"), "received_at": T0 + 999, "headers": {}})


@pytest.fixture
def setup(tmp_path):
    jr = make_journal(tmp_path / "j.sqlite3", [
        ("6281000000001", "whatsapp", "msg_a"), ("6281000000002", "whatsapp", "msg_b"),
        ("6281000000003", "whatsapp", "msg_c"), ("6281000000004", "telegram", "msg_d"),
        ("6281000000005", "whatsapp", ""),
    ])
    warnings: list[str] = []
    tracker = tracking.Tracker(jr, warn=warnings.append, now=lambda: T0 + 7200)
    yield tracker, Events(tmp_path / "ev"), tmp_path / "ev", warnings
    jr.close()


def delivery(tracker):
    return {row: rest for row, *rest in tracker.journal.tx(lambda db: db.execute(
        "SELECT row, rank, sent_at, delivered_at, read_at, failed_at, error FROM delivery"
    ).fetchall(), write=False)}


def test_status_only_moves_forward_out_of_order_and_duplicated(setup):
    tracker, ev, d, _ = setup
    ev.status("msg_a", "read", T0 + 10)
    ev.status("msg_a", "delivered", T0 + 3)
    ev.status("msg_a", "delivered", T0 + 3, event_id="evt_2")  # a retry of the same event
    ev.status("msg_a", "sent", T0 + 1)
    ev.status("msg_b", "failed", T0 + 2, "unreachable")
    scan = tracker.scan(d)
    assert (scan.files, scan.status_events, scan.refused) == (4, 4, 0)
    ev.status("msg_b", "delivered", T0 + 5)  # after failed: failed is final
    ev.status("msg_a", "sent", T0 + 50)  # a later duplicate changes no time
    tracker.scan(d)
    got = delivery(tracker)
    assert got[2] == [3, T0 + 1, T0 + 3, T0 + 10, None, None]
    assert got[3][0] == 4 and got[3][4] == T0 + 2 and got[3][5] == "unreachable"


def test_a_rerun_reads_only_new_or_changed_files(setup):
    tracker, ev, d, _ = setup
    ev.status("msg_a", "sent", T0 + 1)
    ev.status("msg_b", "sent", T0 + 1)
    assert tracker.scan(d).files == 2
    assert tracker.scan(d).files == 0
    ev.status("msg_c", "delivered", T0 + 4)
    assert tracker.scan(d).files == 1
    s = tracker.summary(3600)
    assert (s["sent"], s["delivered"], s["events"]["files"]) == (3, 1, 3)


def test_files_that_are_not_saved_events_are_warned_about_once_and_skipped(setup):
    tracker, ev, d, warnings = setup
    ev.status("msg_a", "delivered", T0 + 1)
    (d / "corrupt.json").write_text("{half a file", encoding="utf-8")  # no newline: in progress
    (d / "garbage.json").write_bytes(b"\x00\xff not json\n")
    (d / "forward-state.json").write_text('{"cursor": 12}\n')  # another tool's file
    (d / "list.json").write_text("[1, 2]\n")
    (d / ".hidden.json").write_text("x")
    (d / "notes.txt").write_text("x")
    (d / "sub.json").mkdir()
    ev.raw({"event": "message.status", "id": "evt_bad", "data": {"status": "delivered"}})
    ev.raw({"event": "message.status", "id": "evt_bad2",
            "data": {"message_id": "msg_b", "status": "bounced"}})
    ev.raw({"event": "message.received", "id": "evt_in", "data": {"text": "hi"}})
    scan = tracker.scan(d)
    assert (scan.files, scan.status_events, scan.refused, scan.incomplete) == (2, 1, 5, 1)
    assert sorted(w.split(": skipped")[0].rsplit("/", 1)[1] for w in warnings) == sorted(
        ["garbage.json", "forward-state.json", "list.json"]
        + [p.name for p in d.glob("evt_bad*")])
    warnings.clear()
    assert tracker.scan(d).refused == 0 and warnings == []  # not again
    (d / "corrupt.json").write_text("{still not an event}\n")  # completed: read now
    assert tracker.scan(d).refused == 1 and len(warnings) == 1
    s = tracker.summary(3600)
    assert s["events"]["other_event_types"] == 1 and s["events"]["refused_files"] == 6


def test_events_of_other_broadcasts_are_counted_and_matched_if_the_row_comes_later(setup):
    tracker, ev, d, _ = setup
    ev.status("msg_zzz", "sent", T0 + 1)
    ev.status("msg_zzz", "delivered", T0 + 2)
    ev.status("msg_late", "delivered", T0 + 2)  # saved before the run recorded the id
    tracker.scan(d)
    assert tracker.summary(3600)["events"]["other_broadcasts"] == 3
    tracker.journal.mark(6, "sent", message_id="msg_late", http_status=201)
    tracker.scan(d)
    s = tracker.summary(3600)
    assert s["events"]["other_broadcasts"] == 2 and s["events"]["other_broadcast_messages"] == 1
    assert delivery(tracker)[6][0] == 2


def test_summary_counts_times_reasons_channels_and_stale_rows(setup):
    tracker, ev, d, _ = setup
    for mid, delay in (("msg_a", 1), ("msg_b", 2), ("msg_c", 10)):
        ev.status(mid, "sent", T0)
        ev.status(mid, "delivered", T0 + delay)
    ev.status("msg_a", "read", T0 + 61)
    tracker.scan(d)
    s = tracker.summary(3600)
    assert {k: s[k] for k in ("accepted", "delivered", "read", "failed", "no_status",
                              "stale")} == {"accepted": 4, "delivered": 3, "read": 1,
                                            "failed": 0, "no_status": 1, "stale": 1}
    assert s["times"]["sent_to_delivered"] == {"count": 3, "median_s": 2.0, "p90_s": 10.0}
    assert s["times"]["delivered_to_read"] == {"count": 1, "median_s": 60.0, "p90_s": 60.0}
    assert s["channels"]["telegram"]["stale"] == 1
    assert [r["row"] for r in s["stale_rows"]] == [5]
    assert s["not_accepted"] == 1
    assert tracker.summary(3 * 3600)["stale"] == 0  # not yet stale after 3 h


def test_five_most_common_failure_reasons(tmp_path):
    rows = [(f"62810000{i:05d}", "whatsapp", f"msg_{i}") for i in range(21)]
    jr = make_journal(tmp_path / "j.sqlite3", rows)
    ev = Events(tmp_path / "ev")
    reasons = ["a"] * 6 + ["b"] * 5 + ["c"] * 4 + ["d"] * 3 + ["e"] * 2 + [None]
    for i, reason in enumerate(reasons):
        ev.status(f"msg_{i}", "failed", T0, reason)
    tracker = tracking.Tracker(jr)
    tracker.scan(tmp_path / "ev")
    got = tracker.summary(3600)["failure_reasons"]
    assert got == [{"reason": r, "count": n} for r, n in (("a", 6), ("b", 5), ("c", 4),
                                                          ("d", 3), ("e", 2))]
    assert tracker.summary(3600)["failed"] == 21
    jr.close()


def test_report_has_delivery_columns_and_is_formula_safe(tmp_path):
    jr = make_journal(tmp_path / "j.sqlite3", [("=HYPERLINK(1)", "whatsapp", "msg_a"),
                                               ("6281000000002", "whatsapp", "msg_b")])
    ev = Events(tmp_path / "ev")
    ev.status("msg_a", "failed", T0 + 5, "+bad =reason")
    tracker = tracking.Tracker(jr, now=lambda: T0 + 7200)
    tracker.scan(tmp_path / "ev")
    out = tmp_path / "r.csv"
    assert tracker.write_report(out, 3600) == 2
    lines = list(csv.DictReader(out.open(encoding="utf-8")))
    assert lines[0]["recipient"] == "'=HYPERLINK(1)" and lines[0]["delivery"] == "failed"
    assert lines[0]["delivery_error"] == "'+bad =reason"
    assert lines[0]["failed_at"] == "2027-01-15T08:00:05Z"
    assert lines[1]["delivery"] == "stale"
    assert tracking.Tracker(jr, now=lambda: T0 + 60).write_report(out, 3600) == 2
    assert list(csv.DictReader(out.open()))[1]["delivery"] == "no status yet"
    jr.close()


def test_follow_until_every_row_is_final_with_an_injected_sleep(tmp_path):
    jr = make_journal(tmp_path / "j.sqlite3", [("6281000000001", "whatsapp", "msg_a"),
                                               ("6281000000002", "whatsapp", "msg_b")])
    ev = Events(tmp_path / "ev")
    arriving = [("msg_a", "delivered"), ("msg_a", "read"), ("msg_b", "failed")]
    sleeps, seen = [], []

    def sleep(seconds):
        sleeps.append(seconds)
        ev.status(*arriving.pop(0), T0 + len(sleeps))

    tracker = tracking.Tracker(jr)
    tracking.follow(tracker, tmp_path / "ev", interval=0.5, sleep=sleep,
                    on_scan=lambda scan: seen.append(scan.files))
    assert sleeps == [0.5, 0.5, 0.5] and seen == [0, 1, 1, 1] and not arriving
    assert tracker.finished()
    jr.close()


def test_a_journal_made_by_the_previous_version_is_migrated_and_tracked(tmp_path):
    path = tmp_path / "v1.sqlite3"
    shutil.copy(FIXTURES / "journal-v1.sqlite3", path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    before = db.execute("SELECT * FROM rows ORDER BY row").fetchall()
    db.close()
    jr = tracking.open_journal(path)
    ev = Events(tmp_path / "ev")
    ev.status("msg_000002cdd8f16adf", "failed", T0, "unreachable")
    tracker = tracking.Tracker(jr)
    tracker.scan(tmp_path / "ev")
    assert tracker.summary(3600)["failed"] == 1
    assert jr.counts()["sent"] == 4
    jr.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION == 3
    assert "row" in {r[1] for r in db.execute("PRAGMA table_info(seen)")}  # v3
    assert db.execute("SELECT * FROM rows ORDER BY row").fetchall() == before
    db.close()


def test_open_journal_refuses_other_files_untouched(tmp_path):
    other = tmp_path / "other.sqlite3"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(UsageError, match="not a broadcast journal"):
        tracking.open_journal(other)
    assert other.read_bytes() == before
    text = tmp_path / "x.sqlite3"
    text.write_text("hello, not sqlite at all " * 100)
    with pytest.raises(UsageError, match="not a broadcast journal"):
        tracking.open_journal(text)


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("30m", 1800),
                                          ("1h", 3600), ("1.5h", 5400), ("2d", 172800)])
def test_parse_duration(text, seconds):
    assert parse_duration(text, "--stale") == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "1w", "1h30m", "nan"])
def test_parse_duration_refuses(text):
    with pytest.raises(UsageError, match="--stale"):
        parse_duration(text, "--stale")


def test_hostile_text_in_events_and_file_names_is_made_printable(setup):
    tracker, ev, d, warnings = setup
    ev.status("msg_a", "failed", T0, "\x1b[31mred\x1b[0m\nline\x07")
    (d / "evil\x1b[2J.json").write_text("nope\n")
    tracker.scan(d)
    assert tracker.summary(3600)["failure_reasons"] == [
        {"reason": "?[31mred?[0m line?", "count": 1}]
    assert len(warnings) == 1 and "\x1b" not in warnings[0] and "evil?[2J.json" in warnings[0]


def _render(summary) -> str:
    from rich.console import Console

    from cloudchat_cli.output import funnel

    console = Console(width=100, record=True, color_system=None, file=io.StringIO())
    console.print(funnel.renderable(summary))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def test_the_funnel_on_a_terminal_bars_percentages_channels_reasons_stale(setup):
    tracker, ev, d, _ = setup
    ev.status("msg_a", "read", T0 + 9)
    ev.status("msg_a", "delivered", T0 + 4)
    ev.status("msg_b", "failed", T0, "blocked")
    ev.status("msg_d", "delivered", T0 + 2)
    tracker.scan(d)
    text = _render(tracker.summary(3600))
    lines = text.splitlines()
    assert lines[0] == "Delivery funnel: 4 accepted"
    assert lines[1].split()[:2] == ["accepted", "4"] and lines[1].endswith("100.0%")
    assert "█" in lines[1] and lines[2].split()[:2] == ["delivered", "2"]
    assert lines[2].endswith("50.0%") and lines[4].split()[-1] == "25.0%"  # failed
    assert "telegram" in lines and "whatsapp" in lines  # one block per channel
    assert "1  blocked" in text and "row 4  6281000000003  whatsapp" in text
    assert "delivered → read   5.0 s" in text
    single = dict(tracker.summary(3600), channels={"whatsapp": {}})
    assert "whatsapp" not in _render(single).splitlines()


def test_plain_lines_when_piped(setup):
    from cloudchat_cli.output import funnel

    tracker, ev, d, _ = setup
    ev.status("msg_a", "delivered", T0 + 4)
    tracker.scan(d)
    lines = funnel.plain_lines(tracker.summary(3600))
    assert lines[:5] == ["accepted: 4", "delivered: 1 (25.0%)", "read: 0 (0.0%)",
                         "failed: 0 (0.0%)", "no status yet: 3 (75.0%)"]
    assert "stale: 3 row(s) with no status 1 h 00 min after sending" in lines
    assert funnel.progress_line(tracker.summary(3600)) == (
        "accepted 4, delivered 1, read 0, failed 0, no status yet 3")


@pytest.mark.parametrize("value,text", [(None, "—"), (0.42, "0.4 s"), (12.4, "12 s"),
                                        (185, "3 min 05 s"), (7620, "2 h 07 min")])
def test_durations_for_people(value, text):
    from cloudchat_cli.output import funnel

    assert funnel.seconds(value) == text
