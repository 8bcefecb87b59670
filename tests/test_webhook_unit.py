"""Signatures (computed independently), raw requests, event summaries, safe file names."""

import base64
import hashlib
import hmac
import json
import math
import re
import shutil
import subprocess
import threading

import pytest

from cloudchat_cli.core.errors import UsageError
from cloudchat_cli.output.webhooks import json_line, summary_line, verify_line
from cloudchat_cli.services.webhooks import events
from cloudchat_cli.services.webhooks import store as store_module
from cloudchat_cli.services.webhooks.rawrequest import RawRequestError, parse_raw_request
from cloudchat_cli.services.webhooks.signature import (
    SignatureFormatError,
    parse_signature,
    sign,
    split_secrets,
    verify,
)
from cloudchat_cli.services.webhooks.store import (
    EventStore,
    Flusher,
    PendingSave,
    event_key,
    write_batch,
)
from cloudchat_cli.services.webhooks.verifying import verify_body, verify_request_file

SECRET = "whsec_unit_0123456789abcdef"
BODY = (b'{"event":"message.received","id":"evt_123456","timestamp":1700000000,'
        b'"channel":"whatsapp","data":{"from":"6281234567890","text":"Halo"}}')


def reference(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


@pytest.mark.e2e
def test_sign_matches_python_hmac_and_openssl(tmp_path):
    assert sign(SECRET, BODY) == reference(SECRET, BODY).hex()
    if shutil.which("openssl"):
        path = tmp_path / "body"
        path.write_bytes(BODY)
        out = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", SECRET, str(path)],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip().endswith(sign(SECRET, BODY))


@pytest.mark.parametrize("encode", [
    lambda d: d.hex(), lambda d: d.hex().upper(), lambda d: "sha256=" + d.hex(),
    lambda d: "SHA256=" + d.hex().upper(), lambda d: base64.b64encode(d).decode(),
    lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="), lambda d: f"  {d.hex()}\n",
])
def test_accepted_encodings(encode):
    assert verify([SECRET], BODY, encode(reference(SECRET, BODY))) == 0


def test_rotation_any_secret_matches():
    old, new = "whsec_old_000000000000", "whsec_new_111111111111"
    assert verify([old, new], BODY, sign(new, BODY)) == 1
    assert split_secrets(f"{old}\r\n{new}\n\n") == [old, new]


@pytest.mark.parametrize("secret", [
    "It's a Secret to Everybody", "abc,def", "a b", "key=value==", "rahasia-ñandú-秘密",
    " leading and trailing ", "whsec_, ,",
])
def test_a_secret_is_never_split(secret):
    assert split_secrets(secret) == [secret]
    assert split_secrets(f"{secret}\nwhsec_second") == [secret, "whsec_second"]


def test_github_published_vector():
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    secrets = split_secrets("It's a Secret to Everybody\n")
    assert sign(secrets[0], b"Hello, World!") == expected
    assert verify(secrets, b"Hello, World!", "sha256=" + expected) == 0


@pytest.mark.parametrize("body", [
    BODY.replace(b"Halo", b"halo"),  # tampered
    BODY[:-1] + b" ",  # one changed byte
    BODY + b"\n",  # one added byte
    b"",  # empty body
])
def test_altered_bodies_fail(body):
    assert verify([SECRET], body, sign(SECRET, BODY)) is None


def test_wrong_secret_fails():
    assert verify(["whsec_other_000000000"], BODY, sign(SECRET, BODY)) is None


def test_empty_body_can_be_signed_and_verified():
    assert verify([SECRET], b"", sign(SECRET, b"")) == 0


@pytest.mark.parametrize("junk", ["", "sha256=", "abc", sign(SECRET, BODY)[:-2],
                                  "zz" * 32, "g" * 64, "not base64 at all!!"])
def test_malformed_signatures_are_errors(junk):
    with pytest.raises(SignatureFormatError):
        parse_signature(junk)


def test_crlf_body_is_verified_byte_exact():
    crlf = BODY.replace(b",", b",\r\n")
    assert verify([SECRET], crlf, sign(SECRET, crlf)) == 0
    assert verify([SECRET], crlf.replace(b"\r\n", b"\n"), sign(SECRET, crlf)) is None


def test_non_json_body_still_verifies():
    result = verify_body(b"plain text", sign(SECRET, b"plain text"), [SECRET])
    assert result.valid and result.event is None and "plain text" in verify_line(result)


def test_max_age():
    sig = sign(SECRET, BODY)
    assert verify_body(BODY, sig, [SECRET], max_age=60, now=1700000030).valid
    stale = verify_body(BODY, sig, [SECRET], max_age=60, now=1700000100)
    assert not stale.valid and "stale" in stale.reason and "valid signature" in stale.reason


@pytest.mark.parametrize(("stamp", "valid", "reason"), [
    (b"NaN", False, "not a finite number"),
    (b"Infinity", False, "not a finite number"),
    (b"-Infinity", False, "not a finite number"),
    (b"1e999", False, "not a finite number"),
    (b"9" * 5000, False, "not a finite number"),
    (b"1700000301", False, "301 s in the future"),
    (b"1e300", False, "in the future"),
    (b"1700000299.5", True, "valid signature"),  # clock skew within 5 minutes
    (b"true", False, "no numeric timestamp"),
])
def test_max_age_rejects_non_finite_and_future_timestamps(stamp, valid, reason):
    body = b'{"id":"evt_t","timestamp":' + stamp + b"}"
    result = verify_body(body, sign(SECRET, body), [SECRET], max_age=60, now=1700000000)
    assert result.valid is valid and reason in result.reason


def test_malformed_signature_is_bad_input_not_a_mismatch():
    with pytest.raises(SignatureFormatError):
        verify_body(BODY, "not-a-signature", [SECRET])
    saved = verify_body(BODY, "not-a-signature", [SECRET], strict=False)  # one of a --dir
    assert not saved.valid and "not a SHA-256 digest" in saved.reason


def request(body: bytes, *, chunked=False, crlf=True, sig=None) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    headers = [b"POST /webhook HTTP/1.1", b"Host: example.com",
               b"X-CloudChat-Signature: " + (sig or sign(SECRET, body)).encode(),
               b"Content-Type: application/json"]
    if chunked:
        headers.append(b"Transfer-Encoding: chunked")
        mid = len(body) // 2
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:mid], body[mid:]))
        payload += b"0\r\n\r\n"
    else:
        headers.append(b"Content-Length: %d" % len(body))
        payload = body + b"GARBAGE AFTER THE BODY"
    return nl.join(headers) + nl + nl + payload


@pytest.mark.parametrize(("chunked", "crlf"), [(False, True), (True, True), (False, False)])
def test_raw_request_parsing(chunked, crlf):
    parsed = parse_raw_request(request(BODY, chunked=chunked, crlf=crlf))
    assert parsed.body == BODY and parsed.method == "POST"
    assert verify([SECRET], parsed.body, parsed.header("x-cloudchat-signature")) == 0


HEAD = b"POST /webhook HTTP/1.1\r\nHost: example.com\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("raw", "message"), [
    (b"not http at all", "headers never end"),
    (b"GARBAGE\r\n\r\n{}", "illegal request line"),
    (HEAD + b"Content-Length: 99\r\n\r\n{}", "body is truncated"),
    (HEAD + b"Content-Length: x\r\n\r\n{}", "bad Content-Length"),
    (HEAD + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}", "bad Content-Length"),
    (HEAD + "Content-Length: ²\r\n\r\n{}".encode(), "bad Content-Length"),
    (HEAD + b"Content-Length: +2\r\n\r\n{}", "bad Content-Length"),
    (HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "conflicting Content-Length"),
    (CHUNKED + b"zz\r\n", "illegal chunk header"),
    (CHUNKED + b"0x2\r\n{}\r\n0\r\n\r\n", "illegal chunk header: '0x2"),
    (CHUNKED + b"2_0\r\n{}\r\n0\r\n\r\n", "illegal chunk header: '2_0"),
    (CHUNKED + b"2\r\n{}", "truncated"),
    (HEAD + b"Transfer-Encoding: notchunked\r\n\r\n{}", "Only Transfer-Encoding: chunked"),
    (HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
     "ambiguous"),
    (b"POST / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n2\n{}\n0\n\n",
     "chunk size lines must end in CRLF"),
    (HEAD + b"Bad Header\r\n\r\n{}", "illegal header line"),
    (b"", "no HTTP request"),
])
def test_raw_request_errors(raw, message):
    with pytest.raises(RawRequestError, match=re.escape(message)) as caught:
        parse_raw_request(raw)
    assert "bytearray" not in caught.value.message and len(caught.value.message) < 200


def test_raw_request_takes_the_first_of_pipelined_requests_and_equal_lengths():
    first = HEAD + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
    parsed = parse_raw_request(first + HEAD + b"Content-Length: 3\r\n\r\n[1]")
    assert parsed.body == b"{}" and parsed.head.length == 2


def test_raw_request_chunked_with_extensions_and_trailers():
    raw = CHUNKED + b"2;name=value\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert parse_raw_request(raw).body == b"{}"


def test_verify_request_refuses_several_signatures(tmp_path):
    raw = request(BODY).replace(b"Host:", b"X-CloudChat-Signature: " + sign(SECRET, BODY).encode()
                                + b"\r\nHost:")
    path = tmp_path / "captured.http"
    path.write_bytes(raw)
    with pytest.raises(UsageError, match="2 X-CloudChat-Signature headers"):
        verify_request_file(path, [SECRET])


def test_summaries():
    assert summary_line(events.parse_body(BODY)) == (
        "message.received whatsapp  from 6281234567890: Halo  [evt_123456]")
    status = events.build_event("message.status", sets=["data.status=read",
                                                        "data.message_id=msg_9"])
    assert summary_line(status).startswith("message.status whatsapp  msg_9 → read")
    received = events.build_event("message.received", sets=["data.text=12345",
                                                            "data.media=null"])
    assert received["data"]["text"] == "12345" and received["data"]["media"] is None


@pytest.mark.parametrize("event_id", ["../../etc/passwd", "a\x00b", "x" * 10_000, "", None,
                                      "évènement/ü", "..", "/abs"])
def test_saved_event_names_stay_inside(tmp_path, event_id):
    store = EventStore(tmp_path / "events")
    key = event_key(event_id, b"{}")
    path = store.save(key, b"{}", {"id": event_id})
    assert path.parent == tmp_path / "events" and len(path.name) < 80
    assert [p.name for p in (tmp_path / "events").iterdir()] == [f"{key}.json"]
    assert event_key(event_id, b"{}") == key  # stable: retries find the same file
    (saved,) = store.load_all()
    assert saved.body == b"{}" and saved.meta["id"] == event_id


def test_saved_bodies_round_trip_byte_exact(tmp_path):
    store = EventStore(tmp_path)
    for i, body in enumerate([BODY.replace(b",", b",\r\n"), b"\xff\xfe binary", "é✓".encode()]):
        store.save(f"k{i}", body, {"received_at": i})
    assert [e.body for e in store.load_all()] == [BODY.replace(b",", b",\r\n"),
                                                  b"\xff\xfe binary", "é✓".encode()]


def test_write_batch_saves_what_it_can_and_reports_the_rest(tmp_path):
    good = PendingSave(tmp_path / "good.json", b'{"a": 1}\n')
    (tmp_path / "bad.json").mkdir()
    bad = PendingSave(tmp_path / "bad.json", b"{}\n")
    missing = PendingSave(tmp_path / "no" / "such.json", b"{}\n")
    write_batch(tmp_path, [good, bad, missing])
    assert good.error is None and good.path.read_bytes() == b'{"a": 1}\n'
    assert isinstance(bad.error, IsADirectoryError)
    assert isinstance(missing.error, FileNotFoundError)


def test_flusher_batches_what_waits_and_drains_on_close(tmp_path):
    store = EventStore(tmp_path)
    batches: list[list[str]] = []
    first_done, release = threading.Event(), threading.Event()

    def on_done(batch):
        batches.append([item.token for item in batch])
        first_done.set()
        release.wait(10)  # hold the thread: everything submitted meanwhile must form one batch

    flusher = store.flusher(on_done)
    flusher.submit(store.pending("k0", b"{}", {}, token=0))
    assert first_done.wait(10)
    for i in range(1, 6):
        flusher.submit(store.pending(f"k{i}", b"{}", {}, token=i))
    release.set()
    flusher.close()
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert store.keys() == {f"k{i}" for i in range(6)}
    assert isinstance(flusher, Flusher)


def test_lone_surrogate_id_is_saved_exact_and_read_back(tmp_path):
    body = b'{"id":"\\ud800x","data":{"text":"\\udfff"}}'  # JSON escapes: valid UTF-8 bytes
    event = events.parse_body(body)
    assert event["id"] == "\ud800x"
    store = EventStore(tmp_path)
    key = event_key(event["id"], body)
    path = store.save(key, body, {"id": event["id"]})
    path.read_text(encoding="utf-8")  # strict UTF-8 on disk
    (saved,) = store.load_all()
    assert saved.body == body and saved.meta["id"] == "\ud800x"


@pytest.mark.parametrize(("event", "check"), [
    ({"id": "\ud800", "data": {"text": "a\udfffb"}},
     lambda line: json.loads(line)["event"]["id"] == "\ud800"),
    ({"id": "é✓"}, lambda line: "é✓" in line),
    ({"id": "big", "n": math.inf}, lambda line: json.loads(line)["event_truncated"]),
    ({"id": "nan", "n": math.nan}, lambda line: json.loads(line)["event"]["id"] == "nan"),
])
def test_json_lines_are_strict_json_and_encodable(event, check):
    line = json_line({"status": "accepted", "event": event})
    line.encode("utf-8")
    json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert check(line)


def test_json_line_of_an_event_nested_too_deep_for_the_encoder():
    deep: dict = {"id": "deep"}
    node = deep
    for _ in range(100_000):
        node["x"] = {}
        node = node["x"]
    assert json.loads(json_line({"event": deep}))["event_truncated"] is True


def test_huge_integers_do_not_make_an_event_not_json():
    event = events.parse_body(b'{"id":"evt_big","n":' + b"7" * 5000 + b"}")
    assert event is not None and event["id"] == "evt_big"


def test_flusher_survives_a_bug_in_a_batch(tmp_path, monkeypatch):
    store = EventStore(tmp_path)
    done: list[list[PendingSave]] = []
    calls = {"n": 0}
    real = store_module.write_batch

    def flaky(directory, batch, sync=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TypeError("a bug")
        return real(directory, batch, sync)

    monkeypatch.setattr(store_module, "write_batch", flaky)
    flusher = store.flusher(done.append)
    first = store.pending("k1", b"{}", {})
    flusher.submit(first)
    flusher.close()
    flusher = store.flusher(done.append)
    second = store.pending("k2", b"{}", {})
    flusher.submit(second)
    flusher.close()
    assert isinstance(first.error, OSError) and "a bug" in str(first.error)
    assert second.error is None and store.keys() == {"k2"}
    assert len(done) == 2  # every batch is reported back, failed or not


def test_an_event_parsed_near_the_recursion_limit_still_prints(tmp_path):
    import sys

    def deepest_parsable() -> dict:
        depth = sys.getrecursionlimit()
        while (event := events.parse_body(b'{"id":"x","data":{"text":' + b"[" * depth
                                          + b"]" * depth + b"}}")) is None:
            depth -= 10
        return event

    event = deepest_parsable()

    def at_depth(n: int):  # the listener prints from further down the stack than it parsed
        return at_depth(n - 1) if n else (json_line({"event": event}),
                                          summary_line(event))

    line, summary = at_depth(60)
    assert json.loads(line)["event"]["id"] == "x" and "[x]" in summary
