"""`webhook listen`: every delivery is answered, and 200 means saved — whatever the event holds."""

import json
import queue
import shutil
import subprocess
import sys
import threading

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudchat_cli.services.webhooks.signature import sign
from cloudchat_cli.services.webhooks.store import EventStore

from .conftest import TEST_KEY, base_env, cloudchat_exe
from .test_e2e_webhook import SECRET, Listener, event_body


def saved_bodies(directory) -> list[bytes]:
    return [e.body for e in EventStore(directory).load_all()]


# JSON text with a lone surrogate: valid UTF-8 bytes, as real platforms send truncated emoji
SURROGATE_EVENT = (b'{"event":"message.received","id":"evt_\\ud800","timestamp":1700000000,'
                   b'"channel":"whatsapp","data":{"from":"6281234567890","text":"cut \\ud83d"}}')


@pytest.mark.e2e
@pytest.mark.parametrize("json_out", [True, False])
def test_lone_surrogates_are_saved_byte_exact_and_printed_safely(tmp_path, wenv, json_out):
    events_dir = tmp_path / "events"
    args = ["--save", str(events_dir)]
    lis = (Listener if json_out else TerminalListener)(wenv, *args)
    try:
        first = lis.post(SURROGATE_EVENT)
        assert (first.status_code, first.json()) == (200, {"status": "ok"})
        line = lis.lines.get(timeout=30)
        if json_out:
            assert json.loads(line)["id"] == "evt_\ud800"
            assert json.loads(line)["event"]["data"]["text"] == "cut \ud83d"
        else:
            assert "evt_" in line and "cut" in line
        assert saved_bodies(events_dir) == [SURROGATE_EVENT]
        retry = lis.post(SURROGATE_EVENT)
        assert retry.json() == {"status": "duplicate"}
    finally:
        assert lis.stop() == 0
    assert "Traceback" not in "".join(lis.errors.queue)


class TerminalListener(Listener):
    """A listener without --json: one human-readable line per event on stdout."""

    def __init__(self, env, *args):
        self.proc = subprocess.Popen(
            [cloudchat_exe(), "webhook", "listen", "--port", "0", *args], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        self.url = line.split("Listening on ", 1)[1].split(" ")[0]
        self.lines: queue.Queue = queue.Queue()
        self.errors: queue.Queue = queue.Queue()
        for stream, out in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._pump, args=(stream, out), daemon=True).start()


@pytest.mark.e2e
def test_500_body_does_not_reveal_local_paths(tmp_path, start):
    from cloudchat_cli.services.webhooks.store import event_key

    events_dir = tmp_path / "events"
    lis = start("--save", str(events_dir))
    (events_dir / f"{event_key('evt_blocked', b'')}.json").mkdir()
    response = lis.post(event_body("evt_blocked"))
    assert response.status_code == 500
    assert response.json() == {"error": "could not save the event"}
    assert str(tmp_path) not in response.text
    assert str(events_dir) in lis.error_line("could not save the event")  # the operator sees it


@pytest.mark.e2e
def test_a_removed_save_directory_is_created_again(tmp_path, start):
    events_dir = tmp_path / "events"
    lis = start("--save", str(events_dir))
    assert lis.post(event_body("evt_before")).status_code == 200
    shutil.rmtree(events_dir)
    assert lis.post(event_body("evt_after_rm")).status_code == 200
    assert "created it again" in lis.error_line("created it again")
    assert saved_bodies(events_dir) == [event_body("evt_after_rm")]
    assert events_dir.stat().st_mode & 0o777 == 0o700


@pytest.mark.e2e
def test_a_save_directory_that_cannot_be_created_answers_500_until_it_can(tmp_path, start):
    events_dir = tmp_path / "events"
    lis = start("--save", str(events_dir))
    shutil.rmtree(events_dir)
    events_dir.write_text("a file where the directory was")
    refused = lis.post(event_body("evt_blocked"))
    assert refused.status_code == 500 and str(tmp_path) not in refused.text
    assert "could not save" in lis.error_line("500 rejected")
    events_dir.unlink()
    retry = lis.post(event_body("evt_blocked"))  # CloudChat's retry: saved now, not a dup
    assert (retry.status_code, retry.json()) == (200, {"status": "ok"})
    assert saved_bodies(events_dir) == [event_body("evt_blocked")]


@pytest.mark.e2e
def test_several_signature_headers_are_a_400(start):
    lis = start()
    body = event_body("evt_two_sigs")
    response = httpx.post(lis.url, content=body, timeout=30, headers=[
        ("X-CloudChat-Signature", sign(SECRET, body)),
        ("X-CloudChat-Signature", sign("whsec_other_000000000000", body))])
    assert response.status_code == 400 and "2 X-CloudChat-Signature" in response.json()["error"]


@pytest.mark.e2e
def test_exec_children_get_neither_the_api_key_nor_the_webhook_secret(tmp_path, wenv, start):
    out = tmp_path / "env.txt"
    env = {**wenv, "CLOUDCHAT_API_KEY": TEST_KEY, "MY_APP_SETTING": "kept",
           "MY_COPY_OF_THE_SECRET": SECRET}
    lis = start("--exec", f"sh -c 'env > {out}'", env=env)
    assert lis.post(event_body("evt_env")).status_code == 200
    assert lis.stop() == 0  # drains the --exec queue
    seen = out.read_text()
    assert "MY_APP_SETTING=kept" in seen
    assert TEST_KEY not in seen and SECRET not in seen
    assert "CLOUDCHAT_API_KEY" not in seen and "CLOUDCHAT_WEBHOOK_SECRET" not in seen


# --- property: any JSON body, every delivery answered, every 200 on disk ------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
text = st.text(st.one_of(st.characters(), surrogates), max_size=20)
huge_numbers = st.one_of(
    st.integers(min_value=10 ** 300, max_value=10 ** 400),
    st.integers(min_value=1, max_value=6000).map(lambda n: 10 ** n - 1),  # n nines
    st.sampled_from([1e308, -1e308, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False,
                    allow_infinity=False), huge_numbers, text)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)), max_leaves=20)


def _dumps(value, *, raw: bool = False) -> bytes:
    """Any Python value as JSON bytes, huge ints written out in full; surrogates as escapes
    (valid UTF-8), or with ``raw`` as their own bytes (not UTF-8: what a buggy sender does)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        if raw:
            return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return json.dumps(value).encode()
    finally:
        sys.set_int_max_str_digits(limit)


@st.composite
def bodies(draw) -> bytes:
    event = draw(st.dictionaries(text, values, max_size=5))
    event["id"] = draw(st.one_of(text, st.integers(), st.none()))
    if draw(st.booleans()):
        event["data"] = {"text": draw(text), "from": draw(text)}
    body = _dumps(event)
    depth = draw(st.sampled_from([0, 0, 0, 50, 2000, 100_000]))
    if depth:  # nesting beyond what a recursive parser takes
        body = body[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    if draw(st.booleans()):  # raw (ensure_ascii=False) UTF-8, surrogates as CESU bytes
        body = _dumps(event, raw=True)
    return body


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hypothesis-listener")
    env = {**base_env(tmp), "CLOUDCHAT_WEBHOOK_SECRET": SECRET}
    lis = Listener(env, "--save", str(tmp / "events"), "--max-body", str(8 * 1024 * 1024))
    with httpx.Client(timeout=30) as client:
        yield lis, client, tmp / "events"
    assert lis.stop() == 0
    assert "Traceback" not in "".join(lis.errors.queue)


@pytest.mark.e2e
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies())
def test_any_json_body_is_answered_and_every_200_is_on_disk(live, body):
    lis, client, events_dir = live
    response = client.post(lis.url, content=body, headers={
        "X-CloudChat-Signature": sign(SECRET, body)})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        if response.json() == {"status": "ok"}:
            assert body in saved_bodies(events_dir)
        else:
            assert response.json() == {"status": "duplicate"}
    else:
        assert response.json()["error"] == "body is not a JSON object"
