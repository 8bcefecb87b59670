"""End to end: real spreadsheet exports through `cloudchat broadcast`, and --dry-run as a check."""

import json
import shutil
from pathlib import Path

import pytest

from .conftest import TEST_KEY, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = "Halo {name}, pesanan {order_id}"


def bc_env(env, box):
    return {**env, "CLOUDCHAT_BASE_URL": box.base_url, "CLOUDCHAT_API_KEY": TEST_KEY,
            "CLOUDCHAT_RATE_LIMIT": "1000", "CLOUDCHAT_RATE_WINDOW": "1",
            "CLOUDCHAT_RATE_MARGIN": "0"}


def fixture(tmp_path, name):
    return str(shutil.copy(FIXTURES / name, tmp_path / name))


def dry_run_json(env, *args):
    proc = run_cli("--sandbox", "broadcast", *args, "-t", TEMPLATE, "--dry-run", "--json",
                   env=env)
    return proc, json.loads(proc.stdout)  # one JSON object, nothing else on stdout


@pytest.mark.parametrize(("name", "extra"), [
    ("lo_tab_utf16.csv", []),
    ("lo_semi_cp1252.csv", ["--encoding", "cp1252"]),
    ("excel_cp1252_semi.csv", ["--encoding", "cp1252"]),
    ("excel_utf8_bom.csv", []),
])
def test_exports_are_sent_to_exactly_the_numbers_written(tmp_path, env, sandbox_factory, name,
                                                         extra):
    box = sandbox_factory("--rate-limit", "1000", "--rate-window", "1", "-q")
    proc = run_cli("broadcast", fixture(tmp_path, name), "-t", TEMPLATE, "--yes", *extra,
                   env=bc_env(env, box))
    assert proc.returncode == 0, proc.stderr
    sent = sorted((r["request"]["to"], r["request"]["text"]) for r in box.records()
                  if r["status"] == 201)
    assert sent[0] == ("6281234567891", "Halo Budi, pesanan ORD-17")
    assert sent[1][0] == "6281234567892" and "Sàri Dewi" in sent[1][1]
    assert sent[1][1].endswith("00123")
    assert all(to.startswith("62812345678") and len(to) == 13 for to, _ in sent)


def test_cp1252_without_encoding_is_refused_naming_the_option(tmp_path, env):
    proc = run_cli("--sandbox", "broadcast", fixture(tmp_path, "lo_semi_cp1252.csv"), "-t",
                   TEMPLATE, "--dry-run", env=env)
    assert proc.returncode == 2
    assert "row 3 is not UTF-8" in proc.stderr and "--encoding cp1252" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dry_run_json_lists_spreadsheet_artefacts_and_exits_2(tmp_path, env):
    proc, plan = dry_run_json(env, fixture(tmp_path, "gsheets_artifacts.csv"))
    assert proc.returncode == 2, proc.stderr
    assert plan["would_refuse"] is True
    assert (plan["rows"], plan["valid"], plan["invalid"], plan["empty_rows"]) == (6, 2, 4, 2)
    assert [(r["row"], r["column"]) for r in plan["invalid_rows"]] == [
        (2, "to"), (3, "to"), (6, "to"), (7, "to")]
    assert "scientific notation" in plan["invalid_rows"][0]["reason"]
    assert "apostrophe" in plan["invalid_rows"][1]["reason"]
    (warning,) = plan["warnings"]
    assert (warning["country_code"], warning["rows"]) == ("81", [4])
    assert "not +62 (most rows)" in warning["message"]
    assert "trailing column" in " ".join(plan["notes"])
    assert "4 recipient(s) were changed by the spreadsheet: format the column as Text" in \
        " ".join(plan["notes"])
    assert plan["per_channel"] == {"whatsapp": 2} and plan["eta_seconds"] > 0
    assert "4 invalid row(s)" in proc.stderr


def test_dry_run_with_skip_invalid_passes_and_text_mode_lists_rows(tmp_path, env):
    path = fixture(tmp_path, "pandas_default.csv")
    proc = run_cli("--sandbox", "broadcast", path, "-t", TEMPLATE, "--dry-run", env=env)
    assert proc.returncode == 2
    assert "row 2, column 'to'" in proc.stderr and "decimal zero" in proc.stderr
    assert "format the column as Text" not in proc.stdout
    assert "index column" in proc.stderr
    proc, plan = dry_run_json(env, path, "--skip-invalid")
    assert proc.returncode == 0 and plan["would_refuse"] is False and plan["valid"] == 0


def test_dry_run_of_a_good_file_exits_0_with_preview(tmp_path, env):
    proc, plan = dry_run_json(env, fixture(tmp_path, "lo_comma_utf8.csv"))
    assert proc.returncode == 0, proc.stderr
    assert (plan["valid"], plan["invalid"], plan["warnings"]) == (7, 0, [])
    assert plan["preview"][0] == {"row": 2, "channel": "whatsapp", "to": "6281234567891",
                                  "type": "text", "text": "Halo Budi, pesanan ORD-17"}


def test_send_refuses_a_float_number_before_any_request(env, sandbox):
    proc = run_cli("send", "6281234567896.0", "x",
                   env={**env, "CLOUDCHAT_BASE_URL": sandbox.base_url,
                        "CLOUDCHAT_API_KEY": TEST_KEY})
    assert proc.returncode == 2 and "decimal zero" in proc.stderr
    assert "format the column as Text" in proc.stderr
    assert sandbox.records() == []
