"""The opt-out list: the `optout` commands, broadcasts and sends that respect it, and a live
`webhook listen --optout-keywords` fed by the sandbox's inbound messages."""

import json
import sqlite3
import subprocess

import pytest

from cloudchat_cli.services import optout

from .conftest import TEST_KEY, cloudchat_exe, run_cli
from .test_e2e_broadcast import TEMPLATE, bc_env, make_csv
from .test_e2e_broadcast_history import sent_to, to
from .test_e2e_webhook import SECRET, Listener


def test_add_list_remove_import_export(tmp_path, env):
    assert run_cli("optout", "add", "+62 812-3456-7890", "--note", "asked by phone",
                   env=env).returncode == 0
    again = run_cli("optout", "add", "6281234567890", env=env)
    assert again.returncode == 0 and "already on the opt-out list" in again.stderr
    assert run_cli("optout", "add", "@alice", "--channel", "tg", env=env).returncode == 0
    bad = run_cli("optout", "add", "0812", env=env)
    assert bad.returncode == 2 and "local number" in bad.stderr
    listed = json.loads(run_cli("optout", "list", "--json", env=env).stdout)
    assert [(e["channel"], e["to"], e["note"]) for e in listed] == [
        ("telegram", "@alice", ""), ("whatsapp", "6281234567890", "asked by phone")]
    plain = tmp_path / "stop.txt"
    plain.write_text("# replied STOP\n6281200000001\n\n+62 812 0000 0002\n")
    assert run_cli("optout", "import", str(plain), env=env).returncode == 0
    sheet = tmp_path / "stop.csv"
    sheet.write_text("\ufeffnama;to;channel\nAni;6281200000003;wa\nBudi;0812;wa\n")
    refused = run_cli("optout", "import", str(sheet), env=env)  # all or nothing
    assert refused.returncode == 2 and "line 3" in refused.stderr
    exported = run_cli("optout", "export", env=env)
    rows = exported.stdout.splitlines()
    assert rows[0] == "channel,to,added_at,note" and len(rows) == 5
    assert "6281200000003" not in exported.stdout
    removed = run_cli("optout", "remove", "6281200000001", env=env)
    assert removed.returncode == 0
    gone = run_cli("optout", "remove", "6281200000001", env=env)
    assert gone.returncode == 2 and "not on the opt-out list" in gone.stderr
    # Per profile, in the state dir, schema versioned.
    db = sqlite3.connect(tmp_path / "state" / "optout" / "default.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == optout.VERSION
    db.close()
    made = run_cli("-p", "shop", "config", "set", "default_channel", "whatsapp", env=env)
    assert made.returncode == 0, made.stderr
    assert run_cli("-p", "shop", "optout", "add", "6289900000000", env=env).returncode == 0
    shop = json.loads(run_cli("-p", "shop", "optout", "list", "--json", env=env).stdout)
    assert [e["to"] for e in shop] == ["6289900000000"]
    assert "6289900000000" not in run_cli("optout", "export", env=env).stdout


def test_keyword_matching_is_whole_message_any_case():
    words = set(optout.parse_keywords("STOP, berhenti"))

    def ev(text, kind="message.received", sender="6281234567890"):
        return {"event": kind, "id": "evt_1", "channel": "whatsapp",
                "data": {"from": sender, "text": text}}

    assert optout.inbound_optout(ev("  Stop \n"), words) == ("whatsapp", "6281234567890", "Stop")
    assert optout.inbound_optout(ev("BERHENTI"), words) is not None
    for text in ("stop please", "STOPP", "", "tolong berhenti"):
        assert optout.inbound_optout(ev(text), words) is None
    assert optout.inbound_optout(ev("STOP", kind="message.status"), words) is None
    assert optout.inbound_optout({"event": "message.received", "data": "x"}, words) is None
    assert optout.inbound_optout(ev(None), words) is None
    with pytest.raises(optout.UsageError):
        optout.parse_keywords(" , ")


def test_keyword_handler_adds_once_and_reports_bad_senders(isolated):
    notes = []
    handle = optout.keyword_handler("default", ["stop"], notes.append, now=lambda: 1.7e9)
    base = {"event": "message.received", "id": "evt_9", "channel": "whatsapp"}
    handle({**base, "data": {"from": "+62 812 3456 7890", "text": "STOP"}})
    handle({**base, "data": {"from": "6281234567890", "text": "stop"}})
    handle({**base, "data": {"from": "not a number", "text": "stop"}})
    assert notes[0] == "opt-out: added whatsapp 6281234567890 (replied 'STOP')"
    assert "already on the list" in notes[1] and "not added" in notes[2]
    lst = optout.OptoutList("default")
    try:
        (entry,) = list(lst.entries())
    finally:
        lst.close()
    assert entry.added_at == 1.7e9 and "evt_9" in entry.note


def test_keyword_handler_raises_when_the_opt_out_cannot_be_recorded(isolated):
    from cloudchat_cli.core import paths

    paths.state_dir().mkdir(parents=True, exist_ok=True)
    (paths.state_dir() / "optout").write_text("not a directory")  # the list cannot be opened
    notes = []
    handle = optout.keyword_handler("default", ["stop"], notes.append)
    stop = {"event": "message.received", "id": "evt_9", "channel": "whatsapp",
            "data": {"from": "6281234567890", "text": "STOP"}}
    with pytest.raises(optout.OptoutError):  # the listener must not acknowledge this STOP
        handle(stop)
    assert len(notes) == 1 and notes[0].startswith("opt-out: could not add '6281234567890'")
    handle({**stop, "data": {"from": "6281234567890", "text": "hello"}})  # not a keyword: fine


@pytest.mark.e2e
def test_stop_through_a_live_listener_then_broadcast_skips_and_send_refuses(
        tmp_path, env, sandbox_factory):
    wenv = {**env, "CLOUDCHAT_WEBHOOK_SECRET": SECRET}
    lis = Listener(wenv, "--optout-keywords", "STOP,BERHENTI")
    try:
        box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q",
                              "--webhook-url", lis.url, "--status-delay", "0", env=wenv)
        root = box.base_url.split("/api/")[0]
        for sender, text in ((to(1), "  stop "), (to(2), "berhenti dulu ya"),
                             (to(3), "BERHENTI")):
            sent = run_cli("sandbox", "inbound", "--url", root, "--from", sender, "--text", text,
                           env=wenv)
            assert sent.returncode == 0, sent.stderr
            assert lis.event()["event"]["data"]["from"] == sender  # handled, in order
        assert f"opt-out: added whatsapp {to(1)}" in lis.error_line("opt-out:")
        assert f"opt-out: added whatsapp {to(3)}" in lis.error_line("opt-out:")
    finally:
        lis.stop()
    listed = {e["to"] for e in json.loads(run_cli("optout", "list", "--json", env=env).stdout)}
    assert listed == {to(1), to(3)}
    path = make_csv(tmp_path, 5)
    cenv = bc_env(env, box)
    dry = run_cli("broadcast", str(path), "-t", TEMPLATE, "--dry-run", env=cenv)
    assert "2 on the opt-out list — skipped" in dry.stderr
    report = tmp_path / "report.csv"
    run = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "--json", "--report",
                  str(report), env=cenv)
    assert run.returncode == 0, run.stderr
    counts = json.loads(run.stdout)
    assert (counts["sent"], counts["opted_out"]) == (3, 2)
    assert report.read_text().count(",opted_out,") == 2
    assert set(sent_to(box)) == {to(0), to(2), to(4)}
    refused = run_cli("send", to(1), "Halo", env=cenv)
    assert refused.returncode == 2 and "opt-out list" in refused.stderr
    assert "--ignore-optout" in refused.stderr
    assert to(1) not in sent_to(box)
    forced = run_cli("send", to(1), "Halo", "--ignore-optout", env=cenv)
    assert forced.returncode == 0, forced.stderr
    assert sent_to(box)[to(1)] == 1


@pytest.mark.e2e
def test_exclude_file_and_opt_outs_that_arrive_before_a_resume(tmp_path, env, sandbox_factory):
    box = sandbox_factory()  # one line per accepted message
    path = make_csv(tmp_path, 8)
    exclude = tmp_path / "exclude.csv"
    exclude.write_text(f"to,name\n+{to(0)},Ani\n")
    cenv = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="2", CLOUDCHAT_RATE_WINDOW="60")
    proc = subprocess.Popen(
        [cloudchat_exe(), "broadcast", str(path), "-t", TEMPLATE, "-y", "--exclude",
         str(exclude), "--concurrency", "1", "--spacing", "burst"], env=cenv,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(2):
        assert box.readline()
    proc.terminate()
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert set(sent_to(box)) == {to(1), to(2)}  # row 2 (to(0)) excluded
    assert run_cli("optout", "add", to(7), env=env).returncode == 0  # replied meanwhile
    plain = tmp_path / "ids.txt"
    plain.write_text(f"{to(6)}\n")
    resumed = run_cli("broadcast", str(path), "-t", TEMPLATE, "-y", "--json", "--exclude",
                      str(plain), env=bc_env(env, box))
    assert resumed.returncode == 0, resumed.stderr
    counts = json.loads(resumed.stdout)
    assert (counts["sent"], counts["excluded"], counts["opted_out"]) == (5, 2, 1)
    assert set(sent_to(box)) == {to(i) for i in range(1, 6)}
    bad = tmp_path / "bad.txt"
    bad.write_text("hello world\n")
    refused = run_cli("broadcast", str(path), "-t", "x {name}", "-y", "--exclude", str(bad),
                      env=bc_env(env, box))
    assert refused.returncode == 2 and "line 1" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert TEST_KEY not in refused.stderr


def test_quiet_add_remove_import_print_nothing_on_success_and_still_report_failures(
        tmp_path, env):
    # For cron (a nightly import from the CRM): mail only when something is wrong.
    plain = tmp_path / "stop.txt"
    plain.write_text("6281200000001\n")
    for args in (("add", "6281234567890", "-q"), ("add", "6281234567890", "--quiet"),
                 ("import", str(plain), "-q"), ("remove", "6281200000001", "--quiet")):
        proc = run_cli("optout", *args, env=env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), args
    listed = json.loads(run_cli("optout", "list", "--json", env=env).stdout)
    assert [e["to"] for e in listed] == ["6281234567890"]
    gone = run_cli("optout", "remove", "6281200000001", "-q", env=env)
    assert gone.returncode == 2 and "not on the opt-out list" in gone.stderr
    bad = run_cli("optout", "add", "0812", "--quiet", env=env)
    assert bad.returncode == 2 and "local number" in bad.stderr
