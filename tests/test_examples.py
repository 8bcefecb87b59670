"""Every shell example in the README and in `--help` runs against the sandbox, and every link
inside the README leads somewhere (see tests/examples.py for how examples are run)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
import unicodedata
from pathlib import Path

import pytest

from . import examples
from .conftest import TEST_KEY, cloudchat_exe

README = Path(__file__).resolve().parents[1] / "README.md"
WEBHOOK_SECRET = "whsec_demo_0123456789"  # the README's own, so its `export` changes nothing


def _signed_body() -> tuple[bytes, str]:
    body = json.dumps({
        "event": "message.received", "id": "evt_readme_1", "timestamp": int(time.time()),
        "channel": "whatsapp", "session_id": "uuid-session-001",
        "data": {"from": "6281234567890", "pushName": "Budi", "text": "Halo", "media": None},
    }).encode()
    return body, hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def _save_one_event(work: Path, env: dict[str, str]) -> None:
    """What `webhook listen --save ./events` leaves behind, made by the real listener."""
    listener = subprocess.Popen(
        [cloudchat_exe(), "webhook", "listen", "--port", "0", "--save", str(work / "events")],
        cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        found = None
        while found is None:
            line = listener.stderr.readline()
            assert line, "the listener did not start"
            found = examples.READY.search(line)
        trigger = subprocess.run(
            [cloudchat_exe(), "webhook", "trigger", found.group(1) + "/"], env=env,
            capture_output=True, text=True, timeout=60)
        assert trigger.returncode == 0, trigger.stderr
    finally:
        listener.terminate()
        listener.wait(30)


@pytest.fixture
def world(tmp_path: Path, env: dict[str, str], sandbox, request) -> tuple[Path, dict[str, str]]:
    """A user's machine: a sandbox as base_url, a key, the files the examples name, a keyring
    when this machine can run one."""
    # Without one, the examples that need a keyring are skipped, with that reason.
    with contextlib.suppress(pytest.skip.Exception):
        env = dict(request.getfixturevalue("secret_service").env)
    work = tmp_path / "work"
    work.mkdir()
    body, signature = _signed_body()
    env.update(
        CLOUDCHAT_BASE_URL=sandbox.base_url, CLOUDCHAT_API_KEY=TEST_KEY,
        CLOUDCHAT_DEFAULT_COUNTRY_CODE="62", CLOUDCHAT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        # the user's own variables, as the examples use them
        KEY=TEST_KEY, CLOUDCHAT_KEY=TEST_KEY, SHOP_KEY=TEST_KEY, SIGNATURE=signature,
    )
    (work / "body.json").write_bytes(body)
    (work / "captured.http").write_bytes(
        b"POST /webhook HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\n"
        b"X-CloudChat-Signature: " + signature.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    (work / "message.json").write_text(json.dumps(
        {"channel": "whatsapp", "to": "6281234567890", "type": "text", "text": "Halo"}))
    (work / "pesan.txt").write_text("Halo {name}, pesanan {order_id} sudah dikirim\n")
    (work / "customers.csv").write_text(
        "to,name,order_id\n6281234567891,Budi,ORD-17\n+62 812-3456-7892,Sari,ORD-18\n")
    (work / "berhenti.csv").write_text("to,note\n6281234567802,replied BERHENTI\n")
    shutil.copy(Path(__file__).parent / "fixtures" / "customers.xlsx", work)  # openpyxl's
    (work / "key.txt").write_text(TEST_KEY + "\n")
    (work / "shop.key").write_text(TEST_KEY)
    (work / "shop.key").chmod(0o600)
    (work / "on-event.sh").write_text("#!/bin/sh\ncat > /dev/null\n")
    (work / "on-event.sh").chmod(0o755)
    _save_one_event(work, env)
    return work, env


def _run(work: Path, env: dict[str, str], found: list[examples.Example]) -> examples.Runner:
    if "CLOUDCHAT_NO_KEYRING" in env:
        for example in found:
            needs_keyring = re.search(r"config\s+set-(key|webhook-secret)\b", example.flat)
            if needs_keyring and "--insecure-storage" not in example.flat and not example.skip:
                example.skip = "needs an OS keyring (no Secret Service on this machine)"
    if shutil.which("jq") is None:
        for example in found:
            if re.search(r"\|\s*jq\b", example.flat) and not example.skip:
                example.skip = "needs jq (apt install jq)"
    runner = examples.Runner(work, env, stdin=TEST_KEY + "\n")
    runner.run_all(found)
    assert not runner.failures, "\n\n".join(runner.failures)
    return runner


@pytest.mark.e2e
def test_readme_examples_run(world):
    work, env = world
    found = examples.readme_examples(README)
    runner = _run(work, env, found)
    # the test cannot pass by finding nothing: most examples run, every skip says why
    assert len(runner.ran) >= 40, runner.ran
    assert all(e.skip.strip() for e in found if e.skip)
    print("\n".join(examples.iter_skipped(found)))


@pytest.mark.e2e
def test_help_examples_run(world, env):
    work, wenv = world
    subprocess.run([cloudchat_exe(), "-p", "shop", "config", "set", "default_channel",
                    "whatsapp"], env=wenv, check=True, capture_output=True)  # `-p shop …`
    found = examples.help_examples()
    runner = _run(work, wenv, found)
    assert len(runner.ran) >= 30, runner.ran
    assert {e.where for e in found} >= {"`cloudchat --help`", "`cloudchat send --help`",
                                        "`cloudchat api --help`", "`cloudchat sandbox --help`",
                                        "`cloudchat config doctor --help`"}


def test_the_extraction_itself():
    block = [
        "cat > a.csv <<'CSV'", "to", "# not a comment here", "CSV",
        "X=1 cloudchat send 1 \\", "  'a # b'   # a comment",
        "", "# a comment line", "cloudchat webhook listen --port 8080 | jq . &",
    ]
    found = examples.split_commands(block, 10, "R", None)
    assert [e.where for e in found] == ["R:10", "R:14", "R:18"]
    assert found[0].command.endswith("# not a comment here\nCSV")
    assert found[1].flat == "cloudchat send 1 'a # b'" and not found[1].is_server
    assert found[2].is_server
    ports = examples.PortMap()
    listen = ports.apply(ports.explicit(examples.Example("R", "cloudchat webhook listen")))
    inbound = ports.apply(ports.explicit(examples.Example("R", "cloudchat sandbox inbound -t x")))
    sandbox = ports.apply(ports.explicit(examples.Example("R", "cloudchat sandbox --port 0")))
    assert re.fullmatch(r"cloudchat webhook listen --port \d+", listen) and "8080" not in listen
    assert inbound.startswith("cloudchat sandbox inbound --url http://127.0.0.1:")
    assert ports.ports.keys() == {"8080", "8787"} and sandbox == "cloudchat sandbox --port 0"


# --- links ---------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def test_github_anchor():
    assert github_anchor("### `cloudchat send TO [TEXT]`".lstrip("# ")) == "cloudchat-send-to-text"
    assert github_anchor("Cron recipe") == "cron-recipe"


def test_readme_links_lead_somewhere():
    text = README.read_text(encoding="utf-8")
    outside_code = re.sub(r"```.*?```", "", text, flags=re.S)
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+)$", outside_code, re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", outside_code)
    assert links, "the README has links; the pattern must find them"
    broken = []
    for link in links:
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        target, _, anchor = link.partition("#")
        if target and not (README.parent / target).exists() or not target and anchor not in anchors:
            broken.append(link)
    assert broken == [], f"README links to nothing: {broken}"
