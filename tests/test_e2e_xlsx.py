"""End to end: workbooks through `cloudchat broadcast`, reports opened with openpyxl and csv."""

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import openpyxl
import pytest

from .conftest import cloudchat_exe, run_cli
from .fixtures import make_workbooks
from .test_e2e_broadcast import bc_env

FIXTURES = Path(__file__).parent / "fixtures"
LIBREOFFICE = "customers_rich_libreoffice.xlsx"
TEMPLATE = "Halo {greeting}, pesanan {order_id} jatuh tempo {due}: Rp {total}"


def fixture(tmp_path, name):
    return shutil.copy(FIXTURES / name, tmp_path / name)


def sent(box):
    return [(r["request"]["to"], r["request"]["text"]) for r in box.records()
            if r["status"] == 201]


def report_rows(path):
    ws = openpyxl.load_workbook(path).active
    rows = list(ws.iter_rows())
    header = [c.value for c in rows[0]]
    return [dict(zip(header, r, strict=False)) for r in rows[1:]]


def workbook(path, n, *, first_to=None):
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["to", "name", "order_id"])
    for i in range(n):
        ws.append([first_to if i == 0 and first_to else 6281200000001 + i, f"Pelanggan {i}",
                   f"{i:05d}"])
    book.save(path)
    return path


def test_a_libreoffice_workbook_is_sent_as_excel_shows_it_and_reported_as_xlsx(
        tmp_path, env, sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = fixture(tmp_path, LIBREOFFICE)
    report = tmp_path / "hasil.xlsx"
    proc = run_cli("broadcast", str(path), "-t", TEMPLATE, "--yes", "--report", str(report),
                   env=bc_env(env, box))
    assert proc.returncode == 0, proc.stderr
    assert "row 1 above the header (a title): ignored" in proc.stderr
    assert sorted(sent(box)) == [
        ("6281234567891", "Halo Budi, pesanan 00123 jatuh tempo 2026-12-01: Rp 300000"),
        ("6281234567892", "Halo Sàri Dewi, pesanan ORD-18 jatuh tempo 2026-12-02 14:30: Rp 199"),
        ("6281234567893", "Halo Kak, pesanan ORD-19 jatuh tempo 2026-12-03: Rp 40000"),
        ("6281234567895", "Halo Eko, pesanan 000042 jatuh tempo 2026-12-05: Rp 2"),
        ("6281234567896", "Halo Rina, S.Kom, pesanan ORD-21 jatuh tempo 2026-12-06: Rp 14"),
    ]
    rows = report_rows(report)
    ids = {r["id"]: r["request"]["to"] for r in box.records()}
    assert [r["row"].value for r in rows] == [3, 4, 5, 7, 8]
    for row in rows:
        assert row["status"].value == "sent"
        assert ids[row["message_id"].value] == row["to"].value == row["recipient"].value
        assert row["to"].data_type == "s" and row["to"].number_format == "@"
    assert rows[0]["name"].value == "Budi" and rows[0]["order_id"].value == "00123"


@pytest.mark.e2e
def test_an_interrupted_workbook_broadcast_resumes_and_history_protects_it(
        tmp_path, env, sandbox_factory):
    box = sandbox_factory()  # one line per accepted message
    path = workbook(tmp_path / "pelanggan.xlsx", 6)
    journal = tmp_path / "j.sqlite3"
    slow = bc_env(env, box, CLOUDCHAT_RATE_LIMIT="2", CLOUDCHAT_RATE_WINDOW="60")
    proc = subprocess.Popen(
        [cloudchat_exe(), "broadcast", str(path), "-t", "Halo {name}", "-y", "--journal",
         str(journal), "--spacing", "burst"],  # 2 at once, then a long wait
        env=slow, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    for _ in range(2):
        assert box.readline()
    proc.send_signal(15)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "resume with: cloudchat broadcast" in err and "pelanggan.xlsx" in err
    fast = bc_env(env, box)
    resumed = run_cli("broadcast", str(path), "-t", "Halo {name}", "-y", "--journal",
                      str(journal), "--report", str(tmp_path / "r.csv"), env=fast)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming: 2 sent" in resumed.stderr
    to = [t for t, _ in sent(box)]
    assert sorted(to) == [str(6281200000001 + i) for i in range(6)]  # each exactly once
    with (tmp_path / "r.csv").open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["row"], r["order_id"], r["status"]) for r in rows] == [
        (str(i + 2), f"{i:05d}", "sent") for i in range(6)]
    again = run_cli("broadcast", str(path), "-t", "Halo {name}", "-y", env=fast)
    assert again.returncode == 0, again.stderr
    assert "already received this exact message" in again.stderr
    assert len(sent(box)) == 6


def test_dry_run_json_of_a_workbook_warns_of_empty_columns_and_strict_refuses(tmp_path, env):
    path = fixture(tmp_path, LIBREOFFICE)
    proc = run_cli("--sandbox", "broadcast", str(path), "-t", "Halo {name}, {order_id}",
                   "--dry-run", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert (plan["sheet"], plan["encoding"], plan["delimiter"]) == ("Pelanggan", None, None)
    assert (plan["rows"], plan["empty_rows"], plan["would_refuse"]) == (5, 1, False)
    (warning,) = plan["warnings"]
    assert (warning["type"], warning["column"], warning["rows"]) == ("empty_column", "name", [5])
    strict = run_cli("--sandbox", "broadcast", str(path), "-t", "Halo {name}, {order_id}",
                     "--dry-run", "--json", "--strict", env=env)
    assert strict.returncode == 2
    assert json.loads(strict.stdout)["would_refuse"] is True
    assert "--strict: {name} is empty in row(s) 5; nothing was sent" in strict.stderr
    text = run_cli("--sandbox", "broadcast", str(path), "-t", "Halo {name}, {order_id}",
                   "--dry-run", env=env)
    assert text.returncode == 0
    assert "{name} is empty in 1 row(s): row(s) 5" in text.stderr
    fallback = run_cli("--sandbox", "broadcast", str(path), "-t", "Halo {name|Kak}",
                       "--dry-run", "--json", "--strict", env=env)
    assert fallback.returncode == 0 and json.loads(fallback.stdout)["warnings"] == []


def test_strict_refuses_a_real_run_before_any_request(tmp_path, env, sandbox_factory):
    box = sandbox_factory("-q")
    path = fixture(tmp_path, LIBREOFFICE)
    proc = run_cli("broadcast", str(path), "-t", "Halo {name}", "--yes", "--strict",
                   env=bc_env(env, box))
    assert proc.returncode == 2 and "{name} is empty in row(s) 5" in proc.stderr
    assert box.records() == []
    again = run_cli("broadcast", str(path), "-t", "Halo {name|Kak}", "--yes", "--strict",
                    env=bc_env(env, box))
    assert again.returncode == 0, again.stderr
    assert len(sent(box)) == 5


def test_report_csv_mirrors_a_semicolon_input_and_names_duplicates(tmp_path, env,
                                                                   sandbox_factory):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    path = fixture(tmp_path, "lo_semi_utf8.csv")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines + [lines[1]]), encoding="utf-8")  # row 2 again at the end
    report = tmp_path / "hasil.csv"
    proc = run_cli("broadcast", str(path), "-t", "Halo {name}", "--yes", "--report",
                   str(report), env=bc_env(env, box))
    assert proc.returncode == 0, proc.stderr
    with report.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    assert rows[0]["name"] == "Budi" and rows[0]["status"] == "sent"
    assert rows[-1]["status"] == "skipped" and rows[-1]["error"] == "duplicate of row 2"
    assert {r["recipient"] for r in rows if r["status"] == "sent"} == {t for t, _ in sent(box)}


@pytest.mark.parametrize(("source", "name", "message"), [
    ("customers.xlsx", "customers.csv", "is a workbook or zip archive, not CSV text"),
    ("lo_comma_utf8.csv", "customers.xlsx", "is not an Excel workbook"),
])
def test_a_name_that_lies_about_the_content(tmp_path, env, source, name, message):
    path = tmp_path / name
    shutil.copy(FIXTURES / source, path)
    proc = run_cli("--sandbox", "broadcast", str(path), "-t", "Hi", "--dry-run", env=env)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr and "not UTF-8" not in proc.stderr


def test_a_formula_never_calculated_is_exit_2_before_any_request(tmp_path, env, sandbox):
    path = fixture(tmp_path, "customers_rich_openpyxl.xlsx")
    proc = run_cli("broadcast", str(path), "-t", "Hi {name}", "--yes",
                   env=bc_env(env, sandbox))
    assert proc.returncode == 2
    assert "row 3, column G ('total') is a formula that was never calculated" in proc.stderr
    assert sandbox.records() == []


WITHOUT_OPENPYXL = textwrap.dedent("""
    import sys
    sys.modules["openpyxl"] = None  # a packager who split openpyxl out
    from cloudchat_cli.app import main
    main(sys.argv[1:])
""")


@pytest.mark.e2e
def test_without_openpyxl_a_workbook_is_exit_2_with_the_install_command(tmp_path, env):
    path = fixture(tmp_path, "customers.xlsx")
    proc = subprocess.run([sys.executable, "-c", WITHOUT_OPENPYXL, "--sandbox", "broadcast",
                           str(path), "-t", "Hi {name}", "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "reading .xlsx needs the openpyxl package" in proc.stderr
    assert "pip install openpyxl" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.e2e
def test_workbooks_only_load_openpyxl_when_given_one(tmp_path, env):
    from .test_ecosystem import loaded_heavy

    csv_path = shutil.copy(FIXTURES / "lo_comma_utf8.csv", tmp_path / "c.csv")
    args = ["--sandbox", "broadcast", "-t", "Hi {name}", "--dry-run"]
    assert not [m for m in loaded_heavy(env, *args[:2], str(csv_path), *args[2:])
                if m.startswith("openpyxl")]
    xlsx = fixture(tmp_path, "customers.xlsx")
    assert "openpyxl" in loaded_heavy(env, *args[:2], str(xlsx), *args[2:])


@pytest.mark.e2e
@pytest.mark.skipif(not (shutil.which("soffice") or shutil.which("libreoffice")),
                    reason="LibreOffice is not installed (a ~90 MB download, kept out of CI; "
                    "tests/fixtures/customers_rich_libreoffice.xlsx is what it writes)")
def test_a_workbook_saved_by_libreoffice_now_reads_as_the_committed_one(tmp_path, env):
    source = tmp_path / "made.xlsx"
    make_workbooks.build(source)
    saved = tmp_path / "saved.xlsx"
    assert make_workbooks.libreoffice(source, saved)
    plans = []
    for path in (saved, fixture(tmp_path, LIBREOFFICE)):
        proc = run_cli("--sandbox", "broadcast", str(path), "-t", TEMPLATE, "--dry-run",
                       "--json", "--preview", "10", env=env)
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        plans.append([(p["row"], p["to"], p["text"]) for p in plan["preview"]])
    assert plans[0] == plans[1] and len(plans[0]) == 5
