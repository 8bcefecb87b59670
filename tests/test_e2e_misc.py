"""Smaller user-facing behaviours: config unset, webhook secret storage, status of a journal,
typed api fields from files, unknown shells."""

import json

import pytest

from .conftest import TEST_KEY


def test_config_unset_restores_the_default(cli):
    assert cli("config", "set", "timeout", "7").returncode == 0
    assert cli("config", "get", "timeout").stdout == "7.0\n"
    proc = cli("config", "unset", "timeout")
    assert proc.returncode == 0 and "Removed timeout" in proc.stderr
    assert cli("config", "get", "timeout").stdout == "30.0\n"
    assert "was not set" in cli("config", "unset", "timeout").stderr
    assert cli("config", "unset", "colour").returncode == 2


def test_webhook_secret_storage_roundtrip(cli, tmp_path):
    secret = "whsec_stored_0123456789abc"
    proc = cli("config", "set-webhook-secret", "--insecure-storage", input=secret)
    assert proc.returncode == 0 and secret not in proc.stdout + proc.stderr
    body = tmp_path / "b.json"
    body.write_bytes(b'{"id":"evt_1"}')
    sig = cli("webhook", "sign", str(body))
    assert sig.returncode == 0
    assert cli("webhook", "verify", str(body), "-s", sig.stdout.strip()).returncode == 0
    assert cli("config", "delete-webhook-secret").returncode == 0
    assert cli("webhook", "verify", str(body), "-s", sig.stdout.strip()).returncode == 2


def test_broadcast_status_of_one_journal(cli, tmp_path):
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("to,name\n6281234567891,A\n6281234567892,B\n")
    journal = tmp_path / "j.sqlite3"
    run = cli("--sandbox", "broadcast", str(csv_path), "-t", "Hi {name}", "-y", "--journal",
              str(journal), CLOUDCHAT_RATE_LIMIT="1000", CLOUDCHAT_RATE_WINDOW="1")  # no pacing
    assert run.returncode == 0, run.stderr
    status = cli("broadcast", "status", str(journal), "--json")
    data = json.loads(status.stdout)
    assert (data["sent"], data["pending"]) == (2, 0) and data["csv"] == str(csv_path)
    human = cli("broadcast", "status", str(journal))
    assert "2 sent, 0 failed" in human.stdout
    assert cli("broadcast", "status", str(tmp_path / "nope")).returncode == 2


def test_api_typed_field_from_file(cli, sandbox, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("dari file")
    cenv = {"CLOUDCHAT_BASE_URL": sandbox.base_url, "CLOUDCHAT_API_KEY": TEST_KEY}
    proc = cli("api", "POST", "messages", "-f", "channel=whatsapp", "-f", "to=6281234567890",
               "-F", f"text=@{text}", **cenv)
    assert proc.returncode == 0, proc.stderr
    assert sandbox.records()[0]["request"]["text"] == "dari file"
    assert cli("api", "POST", "messages", "-F", "text=@/nonexistent", **cenv).returncode == 2


def test_unknown_shell_for_completion(cli):
    proc = cli("completion", "tcsh")
    assert proc.returncode == 2 and "unknown shell" in proc.stderr


@pytest.mark.e2e
def test_an_output_encoding_that_cannot_show_a_character_is_a_clear_error(cli):
    # PYTHONIOENCODING=ascii (or a C locale): config show's table has "—" and "…"
    proc = cli("config", "show", process=True, PYTHONIOENCODING="ascii")
    assert proc.returncode == 1
    assert "cannot be written in this stream's encoding (ascii): it holds '\\u20" in proc.stderr
    assert "PYTHONIOENCODING=utf-8" in proc.stderr and "internal error" not in proc.stderr


@pytest.mark.e2e
def test_stderr_shows_a_character_its_encoding_lacks_escaped(cli):
    proc = cli("--sandbox", "send", "6281234567890", "hi", "-c", "nosuch\u2713", process=True,
               PYTHONIOENCODING="ascii")
    assert proc.returncode == 2, proc.stderr
    assert "unknown channel 'nosuch\\u2713'" in proc.stderr and "internal" not in proc.stderr
